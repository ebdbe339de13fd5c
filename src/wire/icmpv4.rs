//! ICMP (RFC 792) messages: the header view echo translation needs.

use super::{WireError, checksum};

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;
/// Echo Reply.
pub const ECHO_REPLY: u8 = 0;
/// Echo Request.
pub const ECHO_REQUEST: u8 = 8;

/// A view of an ICMP message.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer we sized ourselves.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking it holds the header.
    ///
    /// # Errors
    /// `Truncated` when shorter than 8 bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Echo identifier (bytes 4-5; meaningful for echo messages).
    pub fn echo_ident(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[4], b[5]])
    }

    /// Echo sequence number (bytes 6-7).
    pub fn echo_seq(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }

    /// Whether the checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref(), 0)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the echo identifier.
    pub fn set_echo_ident(&mut self, id: u16) {
        self.buffer.as_mut()[4..6].copy_from_slice(&id.to_be_bytes());
    }

    /// Compute and store the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        let b = self.buffer.as_mut();
        b[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum::fold(checksum::sum(b, 0));
        b[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request, id 0x1234, seq 1, payload "ab", correct checksum.
    fn request() -> [u8; 10] {
        let mut b = [8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b'];
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn deconstruct() {
        let b = request();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (ECHO_REQUEST, 0));
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct_rewrites_ident_and_checksum() {
        let mut b = request();
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_echo_ident(7);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.echo_ident(), 7);
    }

    #[test]
    fn bad_length() {
        assert_eq!(
            Packet::new_checked(&[8u8, 0, 0][..]).unwrap_err(),
            WireError::Truncated
        );
    }
}
