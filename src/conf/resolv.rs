//! Reads the host's resolv.conf: nameserver addresses and the search list.
//!
//! Only what the guest can use is kept: `nameserver` lines (in file order)
//! and the `search`/`domain` list. As resolv.conf(5) says, those two
//! keywords are mutually exclusive and the last one in the file wins.

use std::net::IpAddr;
use std::path::Path;

/// Extracts nameservers and search domains from resolv.conf text.
///
/// Unparsable nameserver lines are skipped. An IPv6 zone (`fe80::1%eth0`)
/// is dropped, keeping the address: the zone names a host interface, which
/// means nothing to the guest. The root domain `.` (systemd-resolved writes
/// `search .` to mean "no search list") is not a search domain.
pub fn parse(text: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut nameservers = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(addr) = words.next().and_then(parse_nameserver) {
                    nameservers.push(addr);
                }
            }
            Some("search") => search = domains(words),
            // `domain` names a single local domain; only its first word counts.
            Some("domain") => search = domains(words.take(1)),
            // Comments (`#`, `;`), options and anything unknown.
            _ => {}
        }
    }
    (nameservers, search)
}

/// Reads and parses resolv.conf at `path`; a missing or unreadable file
/// gives empty lists, as the guest can still run without DNS settings.
pub fn read(path: &Path) -> (Vec<IpAddr>, Vec<String>) {
    match std::fs::read(path) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        Err(_) => (Vec::new(), Vec::new()),
    }
}

/// Parses a nameserver address, dropping any IPv6 zone.
fn parse_nameserver(word: &str) -> Option<IpAddr> {
    let addr = word.split_once('%').map_or(word, |(addr, _zone)| addr);
    addr.parse().ok()
}

/// Collects search domains, skipping the root domain.
fn domains<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    words
        .take_while(|w| !w.starts_with(['#', ';']))
        .filter(|w| *w != ".")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|s| s.parse().expect("test address"))
            .collect()
    }

    fn strs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("", &[], &[]),
            ("nameserver 192.0.2.53\n", &["192.0.2.53"], &[]),
            (
                "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org lan\n",
                &["127.0.0.53"],
                &["example.org", "lan"],
            ),
            (
                "nameserver 2001:db8::53\nnameserver\t192.0.2.1\n",
                &["2001:db8::53", "192.0.2.1"],
                &[],
            ),
            ("nameserver fe80::1%eth0\n", &["fe80::1"], &[]),
            ("nameserver not-an-address\nnameserver\n", &[], &[]),
            ("; nameserver 192.0.2.9\n#nameserver 192.0.2.8\n", &[], &[]),
            ("nameserver 192.0.2.1 # primary\n", &["192.0.2.1"], &[]),
            (
                "search a.example b.example\ndomain c.example\n",
                &[],
                &["c.example"],
            ),
            (
                "domain c.example\nsearch a.example b.example\n",
                &[],
                &["a.example", "b.example"],
            ),
            ("search .\n", &[], &[]),
            ("search a.example # comment\n", &[], &["a.example"]),
            ("domain one.example two.example\n", &[], &["one.example"]),
            ("  nameserver 192.0.2.7  \r\n", &["192.0.2.7"], &[]),
            ("nameservers 192.0.2.7\nsearching x\n", &[], &[]),
        ];
        for (text, ns, search) in cases {
            assert_eq!(parse(text), (ips(ns), strs(search)), "{text:?}");
        }
    }

    #[test]
    fn missing_file_is_empty() {
        let got = read(Path::new("/nonexistent/passt-rs/resolv.conf"));
        assert_eq!(got, (Vec::new(), Vec::new()));
    }

    #[test]
    fn reads_a_file() {
        let dir = std::env::temp_dir().join(format!("passt-rs-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.53\nsearch example.org\n").expect("write");
        let got = read(&path);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got, (ips(&["192.0.2.53"]), strs(&["example.org"])));
    }
}
