//! Port-forwarding specs (`-t`, `-u`, `-T`, `-U`): their grammar and typed form.
//!
//! # Grammar
//!
//! ```text
//! spec    := "none" | [listen "/"] entry ("," entry)*
//! listen  := addr | addr "%" ifname | "%" ifname
//! entry   := range [":" target]          include range, optionally translated
//!          | "~" range                   exclude range (wins over includes)
//!          | "all" [":" addr]            every non-ephemeral port
//!          | "auto"                      (pasta) only ports bound on the other side
//! target  := [addr "/"] range | addr
//! range   := port ["-" port]             1 <= port <= 65535, first <= last
//! ```
//!
//! Addresses may be written in square brackets (`[::1]/22`). A list made only
//! of excludes and/or `auto` means every non-ephemeral port, like `all`.
//!
//! The listening prefix is everything before the first `/`, if that parses as
//! `listen`. Otherwise, when the spec starts with `port[-port]:`, the `/` is
//! taken to belong to a target (`5000:192.0.2.5/6000`). Accepted ambiguity:
//! `22:1::5/80` reads as listening address `22:1::5`, port 80, because that is
//! a valid IPv6 address; write the target in brackets, `22:[1::5]/80`, to mean
//! port 22 forwarded to `[1::5]:80`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Longest interface name the kernel accepts (`IFNAMSIZ` minus the NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Why a port spec was rejected; the text names the offending piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// The spec, or an entry in its list, is empty.
    #[error("empty port list entry")]
    EmptyEntry,
    /// `none` appeared with something else in the same spec.
    #[error("'none' can't be combined with other entries")]
    NoneCombined,
    /// `none` was given after another spec for the same option.
    #[error("'none' conflicts with earlier port specs")]
    NoneAfterRules,
    /// `all` and explicit include ranges in the same spec.
    #[error("'all' can't be combined with port ranges")]
    AllWithRanges,
    /// A port number that is not a number.
    #[error("'{0}': not a port number")]
    NotANumber(String),
    /// Port 0 can't be bound or forwarded.
    #[error("port 0 can't be forwarded")]
    PortZero,
    /// A port number above 65535.
    #[error("port {0} out of range (1-65535)")]
    PortOutOfRange(String),
    /// `last` smaller than `first`.
    #[error("range {0}-{1} is reversed")]
    Reversed(u16, u16),
    /// Source and target ranges of different lengths.
    #[error("range {0} and target {1} differ in length")]
    LengthMismatch(PortRange, PortRange),
    /// An implicit target range that would run past port 65535.
    #[error("target of {0} starting at {1} runs past port 65535")]
    TargetOverflow(PortRange, u16),
    /// Something that is not an IP address where one was expected.
    #[error("'{0}': not an IP address")]
    BadAddress(String),
    /// The part before `/` is neither an address nor `%interface`.
    #[error("'{0}': bad listening address")]
    BadListen(String),
    /// An unusable interface name after `%`.
    #[error("'{0}': {1}")]
    BadIfname(String, &'static str),
    /// An entry that matches none of the forms.
    #[error("'{0}': not a port, range, 'all' or 'auto'")]
    BadEntry(String),
}

/// A non-empty, inclusive range of non-zero port numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// A range from `first` to `last` inclusive, if `0 < first <= last`.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first != 0 && first <= last).then_some(Self { first, last })
    }

    /// First port of the range.
    pub fn first(self) -> u16 {
        self.first
    }

    /// Last port of the range (inclusive).
    pub fn last(self) -> u16 {
        self.last
    }

    /// Number of ports in the range minus one (so it always fits a `u16`).
    pub fn span(self) -> u16 {
        self.last - self.first
    }

    /// Whether `port` is inside the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// An include range and where its ports go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    /// Ports listened on.
    pub from: PortRange,
    /// Target address; `None` means the guest's or namespace's own address.
    pub to_addr: Option<IpAddr>,
    /// Target ports: same length as `from`.
    pub to: PortRange,
}

/// Which ports a rule includes before excludes are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// Every non-ephemeral port (`all`, or only excludes/`auto` given);
    /// failures to bind single ports are not reported.
    All {
        /// Target address from `all:ADDR`, if any.
        to_addr: Option<IpAddr>,
    },
    /// Explicit include ranges, in the order given.
    Ranges(Vec<PortMap>),
}

/// One spec given to `-t`/`-u`/`-T`/`-U`, other than `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Listening address, `None` for any address of both families.
    pub listen_addr: Option<IpAddr>,
    /// Listening interface (`%ifname`), if any.
    pub listen_if: Option<String>,
    /// Included ports.
    pub ports: Ports,
    /// Excluded ranges: they win over `ports`.
    pub exclude: Vec<PortRange>,
    /// `auto` (pasta): only forward ports found bound on the other side.
    pub auto: bool,
}

/// Forwarding for one direction and protocol: a list of rules; empty is `none`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSpec {
    /// The rules, in command-line order.
    pub rules: Vec<PortRule>,
}

impl PortSpec {
    /// No forwarding at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// pasta's default: every port found bound on the other side, any address.
    pub fn auto() -> Self {
        Self {
            rules: vec![PortRule {
                listen_addr: None,
                listen_if: None,
                ports: Ports::All { to_addr: None },
                exclude: Vec::new(),
                auto: true,
            }],
        }
    }

    /// Whether nothing is forwarded.
    pub fn is_none(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule uses `auto`.
    pub fn has_auto(&self) -> bool {
        self.rules.iter().any(|r| r.auto)
    }

    /// Whether any rule names a listening address or interface.
    pub fn has_listen(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.listen_addr.is_some() || r.listen_if.is_some())
    }

    /// Combines the specs of a repeated option, in order: rules add up, and
    /// `none` is only accepted before any rule. `Ok(None)` if `specs` is empty.
    ///
    /// # Errors
    ///
    /// [`PortSpecError::NoneAfterRules`] for `none` after a rule.
    pub fn combine<'a>(
        specs: impl IntoIterator<Item = &'a PortSpec>,
    ) -> Result<Option<PortSpec>, PortSpecError> {
        let mut out: Option<PortSpec> = None;
        for spec in specs {
            let acc = out.get_or_insert_with(PortSpec::none);
            if spec.is_none() && !acc.is_none() {
                return Err(PortSpecError::NoneAfterRules);
            }
            acc.rules.extend(spec.rules.iter().cloned());
        }
        Ok(out)
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses one spec as given to `-t`, `-u`, `-T` or `-U`.
///
/// Mode rules (`auto` only for pasta, no listening address for `-T`/`-U`)
/// are the caller's, see [`PortSpec::has_auto`] and [`PortSpec::has_listen`].
///
/// # Errors
///
/// A [`PortSpecError`] naming the first problem found.
pub fn parse(spec: &str) -> Result<PortSpec, PortSpecError> {
    if spec == "none" {
        return Ok(PortSpec::none());
    }
    let (listen_addr, listen_if, list) = split_listen(spec)?;
    let rule = parse_list(list, listen_addr, listen_if)?;
    Ok(PortSpec { rules: vec![rule] })
}

/// Checks an interface name the way the kernel would, returning the reason
/// it is unusable.
///
/// # Errors
///
/// A short reason, for the caller to put after the name.
pub fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty interface name")
    } else if name.len() > MAX_IFNAME_LEN {
        Err("interface name too long (max 15 bytes)")
    } else if name == "." || name == ".." {
        Err("not a valid interface name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Err("interface name contains '/', ':' or whitespace")
    } else {
        Ok(())
    }
}

/// Splits `[listen/]list` into listening address, interface and the list.
fn split_listen(spec: &str) -> Result<(Option<IpAddr>, Option<String>, &str), PortSpecError> {
    let Some((prefix, rest)) = spec.split_once('/') else {
        return Ok((None, None, spec));
    };
    match parse_listen(prefix) {
        Ok((addr, ifname)) => Ok((addr, ifname, rest)),
        // The '/' belongs to a target: `5000:192.0.2.5/6000`.
        Err(_) if starts_with_range_and_colon(prefix) => Ok((None, None, spec)),
        Err(e) => Err(e),
    }
}

/// Parses `addr`, `addr%ifname` or `%ifname`.
fn parse_listen(prefix: &str) -> Result<(Option<IpAddr>, Option<String>), PortSpecError> {
    let (addr, ifname) = match prefix.split_once('%') {
        Some((addr, ifname)) => {
            check_ifname(ifname).map_err(|why| PortSpecError::BadIfname(ifname.into(), why))?;
            (addr, Some(ifname.to_string()))
        }
        None => (prefix, None),
    };
    if addr.is_empty() {
        return match ifname {
            Some(_) => Ok((None, ifname)),
            None => Err(PortSpecError::BadListen(prefix.into())),
        };
    }
    let addr = parse_addr(addr).map_err(|_| PortSpecError::BadListen(prefix.into()))?;
    Ok((Some(addr), ifname))
}

/// Whether `s` starts with `port[-port]:`, the shape of a translated entry.
fn starts_with_range_and_colon(s: &str) -> bool {
    s.split_once(':').is_some_and(|(range, _)| {
        !range.is_empty() && range.chars().all(|c| c.is_ascii_digit() || c == '-')
    })
}

/// Parses an address, optionally in square brackets.
fn parse_addr(s: &str) -> Result<IpAddr, PortSpecError> {
    let bare = s
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse()
        .map_err(|_| PortSpecError::BadAddress(s.to_string()))
}

/// What one comma-separated entry turned out to be.
enum Entry {
    Include(PortMap),
    Exclude(PortRange),
    All(Option<IpAddr>),
    Auto,
}

/// Parses the comma-separated list into one rule.
fn parse_list(
    list: &str,
    listen_addr: Option<IpAddr>,
    listen_if: Option<String>,
) -> Result<PortRule, PortSpecError> {
    let mut ranges = Vec::new();
    let mut exclude = Vec::new();
    let mut all: Option<Option<IpAddr>> = None;
    let mut auto = false;
    for item in list.split(',') {
        match parse_entry(item)? {
            Entry::Include(map) => ranges.push(map),
            Entry::Exclude(range) => exclude.push(range),
            Entry::All(to_addr) => all = Some(to_addr),
            Entry::Auto => auto = true,
        }
    }
    let ports = match (all, ranges.is_empty()) {
        (Some(_), false) => return Err(PortSpecError::AllWithRanges),
        (Some(to_addr), true) => Ports::All { to_addr },
        // Only excludes and/or `auto`: the manual makes that mean `all`.
        (None, true) => Ports::All { to_addr: None },
        (None, false) => Ports::Ranges(ranges),
    };
    Ok(PortRule {
        listen_addr,
        listen_if,
        ports,
        exclude,
        auto,
    })
}

/// Parses one entry of the list.
fn parse_entry(item: &str) -> Result<Entry, PortSpecError> {
    match item {
        "" => return Err(PortSpecError::EmptyEntry),
        "auto" => return Ok(Entry::Auto),
        "none" => return Err(PortSpecError::NoneCombined),
        "all" => return Ok(Entry::All(None)),
        _ => {}
    }
    if let Some(addr) = item.strip_prefix("all:") {
        return Ok(Entry::All(Some(parse_addr(addr)?)));
    }
    if let Some(range) = item.strip_prefix('~') {
        return Ok(Entry::Exclude(parse_range(range)?));
    }
    if !item.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(PortSpecError::BadEntry(item.to_string()));
    }
    let (from, target) = match item.split_once(':') {
        Some((from, target)) => (parse_range(from)?, Some(target)),
        None => (parse_range(item)?, None),
    };
    let (to_addr, to) = match target {
        None => (None, from),
        Some(target) => parse_target(from, target)?,
    };
    Ok(Entry::Include(PortMap { from, to_addr, to }))
}

/// Parses the part after `:` in an include entry, for source range `from`.
fn parse_target(
    from: PortRange,
    target: &str,
) -> Result<(Option<IpAddr>, PortRange), PortSpecError> {
    let (addr, ports) = match target.rsplit_once('/') {
        Some((addr, ports)) => (Some(parse_addr(addr)?), Some(ports)),
        None if looks_like_range(target) => (None, Some(target)),
        None => (Some(parse_addr(target)?), None),
    };
    let to = match ports {
        None => from,
        Some(ports) => {
            let to = parse_range_open(ports)?;
            match to.1 {
                Some(_) if to.0.span() != from.span() => {
                    return Err(PortSpecError::LengthMismatch(from, to.0));
                }
                Some(_) => to.0,
                // `tofirst` alone: the target range has the source's length.
                None => extend(from, to.0.first())?,
            }
        }
    };
    Ok((addr, to))
}

/// The range starting at `first` with the same length as `from`.
fn extend(from: PortRange, first: u16) -> Result<PortRange, PortSpecError> {
    first
        .checked_add(from.span())
        .and_then(|last| PortRange::new(first, last))
        .ok_or(PortSpecError::TargetOverflow(from, first))
}

/// Whether `s` is made of digits and `-` only (a port or port range).
fn looks_like_range(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '-')
}

/// Parses `first[-last]`.
fn parse_range(s: &str) -> Result<PortRange, PortSpecError> {
    parse_range_open(s).map(|(range, _)| range)
}

/// Parses `first[-last]`, also returning `last` if it was written.
fn parse_range_open(s: &str) -> Result<(PortRange, Option<u16>), PortSpecError> {
    let (first, last) = match s.split_once('-') {
        Some((first, last)) => (parse_port(first)?, Some(parse_port(last)?)),
        None => (parse_port(s)?, None),
    };
    let end = last.unwrap_or(first);
    PortRange::new(first, end)
        .map(|range| (range, last))
        .ok_or(PortSpecError::Reversed(first, end))
}

/// Parses a port number, 1 to 65535.
fn parse_port(s: &str) -> Result<u16, PortSpecError> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(PortSpecError::NotANumber(s.to_string()));
    }
    match s.parse::<u16>() {
        Ok(0) => Err(PortSpecError::PortZero),
        Ok(port) => Ok(port),
        // All digits, so the only failure left is overflow.
        Err(_) => Err(PortSpecError::PortOutOfRange(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn r(first: u16, last: u16) -> PortRange {
        PortRange::new(first, last).expect("valid test range")
    }

    fn map(from: PortRange, to_addr: Option<IpAddr>, to: PortRange) -> PortMap {
        PortMap { from, to_addr, to }
    }

    fn same(first: u16, last: u16) -> PortMap {
        map(r(first, last), None, r(first, last))
    }

    fn rule(ports: Ports) -> PortRule {
        PortRule {
            listen_addr: None,
            listen_if: None,
            ports,
            exclude: Vec::new(),
            auto: false,
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    const ALL: Ports = Ports::All { to_addr: None };

    /// Every example of the manual, plus the other accepted forms.
    #[test]
    fn good_specs() {
        let lo6 = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let cases: Vec<(&str, PortRule)> = vec![
            ("all", rule(ALL)),
            (
                "::1/all",
                PortRule {
                    listen_addr: lo6,
                    ..rule(ALL)
                },
            ),
            ("22", rule(Ports::Ranges(vec![same(22, 22)]))),
            (
                "22:23",
                rule(Ports::Ranges(vec![map(r(22, 22), None, r(23, 23))])),
            ),
            (
                "22,25",
                rule(Ports::Ranges(vec![same(22, 22), same(25, 25)])),
            ),
            ("22-80", rule(Ports::Ranges(vec![same(22, 80)]))),
            (
                "22-80:32-90",
                rule(Ports::Ranges(vec![map(r(22, 80), None, r(32, 90))])),
            ),
            (
                "22-80:32",
                rule(Ports::Ranges(vec![map(r(22, 80), None, r(32, 90))])),
            ),
            (
                "192.0.2.1/22",
                PortRule {
                    listen_addr: v4(192, 0, 2, 1),
                    ..rule(Ports::Ranges(vec![same(22, 22)]))
                },
            ),
            (
                "192.0.2.1%eth0/22",
                PortRule {
                    listen_addr: v4(192, 0, 2, 1),
                    listen_if: Some("eth0".into()),
                    ..rule(Ports::Ranges(vec![same(22, 22)]))
                },
            ),
            (
                "%eth0/22",
                PortRule {
                    listen_if: Some("eth0".into()),
                    ..rule(Ports::Ranges(vec![same(22, 22)]))
                },
            ),
            (
                "0.0.0.0/5000:192.0.2.5/6000",
                PortRule {
                    listen_addr: v4(0, 0, 0, 0),
                    ..rule(Ports::Ranges(vec![map(
                        r(5000, 5000),
                        v4(192, 0, 2, 5),
                        r(6000, 6000),
                    )]))
                },
            ),
            (
                "5000:192.0.2.5/6000",
                rule(Ports::Ranges(vec![map(
                    r(5000, 5000),
                    v4(192, 0, 2, 5),
                    r(6000, 6000),
                )])),
            ),
            (
                "22:192.0.2.5",
                rule(Ports::Ranges(vec![map(
                    r(22, 22),
                    v4(192, 0, 2, 5),
                    r(22, 22),
                )])),
            ),
            (
                "22:[2001:db8::1]/80",
                rule(Ports::Ranges(vec![map(
                    r(22, 22),
                    Some("2001:db8::1".parse().expect("addr")),
                    r(80, 80),
                )])),
            ),
            (
                "127.0.0.6/all:192.0.2.6",
                PortRule {
                    listen_addr: v4(127, 0, 0, 6),
                    ..rule(Ports::All {
                        to_addr: v4(192, 0, 2, 6),
                    })
                },
            ),
            (
                "2000-5000,~3000-3010",
                PortRule {
                    exclude: vec![r(3000, 3010)],
                    ..rule(Ports::Ranges(vec![same(2000, 5000)]))
                },
            ),
            (
                "192.0.2.1/20-30,~25",
                PortRule {
                    listen_addr: v4(192, 0, 2, 1),
                    exclude: vec![r(25, 25)],
                    ..rule(Ports::Ranges(vec![same(20, 30)]))
                },
            ),
            (
                "~20000-20010",
                PortRule {
                    exclude: vec![r(20000, 20010)],
                    ..rule(ALL)
                },
            ),
            (
                "all,~25",
                PortRule {
                    exclude: vec![r(25, 25)],
                    ..rule(ALL)
                },
            ),
            (
                "auto",
                PortRule {
                    auto: true,
                    ..rule(ALL)
                },
            ),
            (
                "::1/auto",
                PortRule {
                    listen_addr: lo6,
                    auto: true,
                    ..rule(ALL)
                },
            ),
            (
                "[::1]/22",
                PortRule {
                    listen_addr: lo6,
                    ..rule(Ports::Ranges(vec![same(22, 22)]))
                },
            ),
            (
                "8000-8010,auto",
                PortRule {
                    auto: true,
                    ..rule(Ports::Ranges(vec![same(8000, 8010)]))
                },
            ),
            ("1-65535", rule(Ports::Ranges(vec![same(1, 65535)]))),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec), Ok(PortSpec { rules: vec![want] }), "{spec}");
        }
        assert_eq!(parse("none"), Ok(PortSpec::none()));
        assert_eq!(parse("auto"), Ok(PortSpec::auto()));
    }

    #[test]
    fn bad_specs() {
        use PortSpecError as E;
        let cases: Vec<(&str, PortSpecError)> = vec![
            ("", E::EmptyEntry),
            ("22,", E::EmptyEntry),
            (",22", E::EmptyEntry),
            ("none,22", E::NoneCombined),
            ("::1/none", E::NoneCombined),
            ("all,22", E::AllWithRanges),
            ("0", E::PortZero),
            ("0-10", E::PortZero),
            ("65536", E::PortOutOfRange("65536".into())),
            (
                "99999999999999999999",
                E::PortOutOfRange("99999999999999999999".into()),
            ),
            ("80-22", E::Reversed(80, 22)),
            ("22-", E::NotANumber(String::new())),
            ("22-x", E::NotANumber("x".into())),
            ("22:", E::BadAddress(String::new())),
            ("22:x/80", E::BadAddress("x".into())),
            ("22:foo", E::BadAddress("foo".into())),
            ("22-80:32-95", E::LengthMismatch(r(22, 80), r(32, 95))),
            ("22-80:65500", E::TargetOverflow(r(22, 80), 65500)),
            ("22-80:0", E::PortZero),
            ("~", E::NotANumber(String::new())),
            ("~0", E::PortZero),
            ("~30-20", E::Reversed(30, 20)),
            ("foo", E::BadEntry("foo".into())),
            ("-5", E::BadEntry("-5".into())),
            ("22x", E::NotANumber("22x".into())),
            ("auto2", E::BadEntry("auto2".into())),
            ("all:", E::BadAddress(String::new())),
            ("all:nope", E::BadAddress("nope".into())),
            ("192.0.2.300/22", E::BadListen("192.0.2.300".into())),
            ("foo/22", E::BadListen("foo".into())),
            ("/22", E::BadListen(String::new())),
            ("%/22", E::BadIfname(String::new(), "empty interface name")),
            (
                "%averyveryverylongname/22",
                E::BadIfname(
                    "averyveryverylongname".into(),
                    "interface name too long (max 15 bytes)",
                ),
            ),
            ("192.0.2.1/", E::EmptyEntry),
        ];
        for (spec, want) in cases {
            assert_eq!(parse(spec), Err(want), "{spec:?}");
        }
    }

    #[test]
    fn error_text_names_the_piece() {
        let text = |s: &str| parse(s).err().map(|e| e.to_string());
        assert_eq!(
            text("22-80:32-95").as_deref(),
            Some("range 22-80 and target 32-95 differ in length")
        );
        assert_eq!(
            text("70000").as_deref(),
            Some("port 70000 out of range (1-65535)")
        );
        assert_eq!(text("80-22").as_deref(), Some("range 80-22 is reversed"));
        assert_eq!(
            text("bogus").as_deref(),
            Some("'bogus': not a port, range, 'all' or 'auto'")
        );
    }

    #[test]
    fn combine_accumulates_and_rejects_late_none() {
        let a = parse("22").expect("spec");
        let b = parse("80:8080").expect("spec");
        let none = PortSpec::none();
        assert_eq!(PortSpec::combine([]), Ok(None));
        assert_eq!(PortSpec::combine([&none]), Ok(Some(PortSpec::none())));
        let both = PortSpec::combine([&none, &a, &b]).expect("combine");
        assert_eq!(both.map(|s| s.rules.len()), Some(2));
        assert_eq!(
            PortSpec::combine([&a, &none]),
            Err(PortSpecError::NoneAfterRules)
        );
    }

    #[test]
    fn helpers() {
        assert!(PortSpec::auto().has_auto());
        assert!(!parse("22").expect("spec").has_auto());
        assert!(parse("%lo/22").expect("spec").has_listen());
        assert!(!parse("22").expect("spec").has_listen());
        assert!(r(20, 30).contains(25));
        assert_eq!(r(20, 30).to_string(), "20-30");
        assert_eq!(r(20, 20).to_string(), "20");
        assert_eq!(PortRange::new(0, 3), None);
        assert_eq!(PortRange::new(4, 3), None);
        assert_eq!(check_ifname("eth0"), Ok(()));
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("..").is_err());
    }
}
