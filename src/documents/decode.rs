//! A file's bytes as text, whatever its encoding: a byte-order mark (UTF-8, UTF-16), UTF-16
//! without one (told by its zero bytes), valid UTF-8, the charset an HTML file declares in a
//! `<meta>`, then chardetng's guess (the detector Firefox uses) — or the encoding the caller
//! forces. The decoded text keeps a map back to the file's bytes, so that passages' `start` and
//! `end` stay offsets into the original file.

use super::extract::Kind;
use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

/// A file's text and where each of its UTF-8 bytes came from.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The text (without a byte-order mark).
    pub text: String,
    /// The encoding it was read with (its WHATWG name, e.g. `Shift_JIS`).
    pub encoding: &'static str,
    /// UTF-8 input: the file's bytes are the text's, shifted by the mark's length.
    shift: usize,
    /// Other encodings: the file offset of each UTF-8 offset of `text` (one past the end
    /// included).
    map: Option<Vec<u32>>,
}

impl Decoded {
    /// The file offset of the text's UTF-8 offset `at` (a character boundary or the end).
    pub fn original(&self, at: usize) -> usize {
        match &self.map {
            None => at + self.shift,
            Some(map) => map[at.min(map.len() - 1)] as usize,
        }
    }

    /// Whether offsets need mapping (the file is not UTF-8 without a mark).
    pub fn remaps(&self) -> bool {
        self.map.is_some() || self.shift > 0
    }
}

/// Reads `bytes` as text: with `forced` when given, else as told by the steps in the module
/// docs. `Err` is a reason to skip the file.
pub(crate) fn decode(
    bytes: &[u8],
    kind: Kind,
    forced: Option<&'static Encoding>,
) -> Result<Decoded, String> {
    if let Some(encoding) = forced {
        let skip = match Encoding::for_bom(bytes) {
            Some((bom, len)) if bom == encoding => len,
            _ => 0,
        };
        return with(encoding, bytes, skip);
    }
    if let Some((encoding, len)) = Encoding::for_bom(bytes) {
        return with(encoding, bytes, len);
    }
    if let Some(encoding) = utf16_without_bom(bytes) {
        if let Ok(d) = with(encoding, bytes, 0).and_then(text_like) {
            return Ok(d);
        }
    }
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err("binary content (a NUL byte in the first 8 KiB)".into());
    }
    if std::str::from_utf8(bytes).is_ok() {
        return with(UTF_8, bytes, 0);
    }
    if kind == Kind::Html {
        if let Some(encoding) = html_meta_charset(bytes) {
            return with(encoding, bytes, 0);
        }
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let guess = detector.guess(None, chardetng::Utf8Detection::Deny);
    with(guess, bytes, 0).and_then(text_like).map_err(|reason| {
        format!(
            "the encoding could not be told (the best guess, {reason}); give it with --encoding"
        )
    })
}

/// Text a guessed encoding made must read as text: no NUL and few control characters
/// (binary data decodes without error in most single-byte encodings and as UTF-16).
fn text_like(d: Decoded) -> Result<Decoded, String> {
    let (mut chars, mut control) = (0usize, 0usize);
    for c in d.text.chars() {
        chars += 1;
        if c == '\0' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c')) {
            control += 1;
        }
    }
    if control * 20 > chars {
        return Err(format!(
            "{}: {control} of {chars} characters are control characters",
            d.encoding
        ));
    }
    Ok(d)
}

/// UTF-16 without a byte-order mark: in text of mostly Latin, Cyrillic or other alphabetic
/// scripts every other byte is zero. Needs a third of one side's bytes zero and almost none of
/// the other's, in the first 4 KiB.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(4096) & !1];
    if head.len() < 8 {
        return None;
    }
    let pairs = head.len() / 2;
    let zero_even = head.iter().step_by(2).filter(|&&b| b == 0).count();
    let zero_odd = head.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
    let (much, little) = (pairs / 3, pairs / 50);
    if zero_odd >= much && zero_even <= little {
        Some(UTF_16LE)
    } else if zero_even >= much && zero_odd <= little {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// The charset an HTML file declares in its first 1,024 bytes (`<meta charset="…">` or
/// `<meta http-equiv="Content-Type" content="…; charset=…">`), if encoding_rs knows the label.
fn html_meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset=")? + "charset=".len();
    let label: String = head[at..]
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    Encoding::for_label(label.as_bytes())
}

/// Decodes `bytes[skip..]` with `encoding`, recording for each UTF-8 byte the file offset of
/// the character it belongs to. Malformed input is an error naming the encoding.
fn with(encoding: &'static Encoding, bytes: &[u8], skip: usize) -> Result<Decoded, String> {
    let name = encoding.name();
    if encoding == UTF_8 {
        let text = std::str::from_utf8(&bytes[skip..])
            .map_err(|e| format!("{name}: invalid at byte {}", skip + e.valid_up_to()))?;
        return Ok(Decoded {
            text: text.to_string(),
            encoding: name,
            shift: skip,
            map: None,
        });
    }
    if bytes.len() > u32::MAX as usize {
        return Err("too large to map".into());
    }
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut text = String::with_capacity(bytes.len() * 3 / 2);
    let mut map: Vec<u32> = Vec::with_capacity(text.capacity());
    // The file offset where the character being decoded started.
    let mut start = skip;
    for i in skip..bytes.len() {
        let last = i + 1 == bytes.len();
        let need = decoder
            .max_utf8_buffer_length_without_replacement(1)
            .unwrap_or(16);
        text.reserve(need);
        let before = text.len();
        let (result, _read) =
            decoder.decode_to_string_without_replacement(&bytes[i..i + 1], &mut text, last);
        if let encoding_rs::DecoderResult::Malformed(_, _) = result {
            return Err(format!("{name}: malformed at byte {i}"));
        }
        if text.len() > before {
            map.resize(text.len(), start as u32);
            start = i + 1;
        }
    }
    map.push(bytes.len() as u32);
    Ok(Decoded {
        text,
        encoding: name,
        shift: 0,
        map: Some(map),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str, big: bool, bom: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if bom {
            out.extend_from_slice(if big { &[0xfe, 0xff] } else { &[0xff, 0xfe] });
        }
        for unit in text.encode_utf16() {
            let b = if big {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            };
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn every_way_in_gives_the_text_and_offsets_into_the_file() {
        let text = "Kirjasto on auki yhdeksästä kuuteen. Lainaaja voi lainata kirjoja.";
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (text.as_bytes().to_vec(), "UTF-8"),
            ([&[0xef, 0xbb, 0xbf][..], text.as_bytes()].concat(), "UTF-8"),
            (utf16(text, false, true), "UTF-16LE"),
            (utf16(text, true, true), "UTF-16BE"),
            (utf16(text, false, false), "UTF-16LE"),
            (utf16(text, true, false), "UTF-16BE"),
            (
                encoding_rs::WINDOWS_1252.encode(text).0.into_owned(),
                "windows-1252",
            ),
        ];
        for (bytes, want) in cases {
            let d = decode(&bytes, Kind::Text, None).unwrap();
            assert_eq!((d.text.as_str(), d.encoding), (text, want), "{want}");
            // "yhdeksästä" starts where the file has it.
            let at = text.find("yhdeksästä").unwrap();
            let end = at + "yhdeksästä".len();
            let enc = Encoding::for_label(want.as_bytes()).unwrap();
            let (orig, _) =
                enc.decode_without_bom_handling(&bytes[d.original(at)..d.original(end)]);
            assert_eq!(orig, "yhdeksästä", "{want}");
            assert_eq!(d.original(text.len()), bytes.len(), "{want}");
        }
    }

    #[test]
    fn html_says_its_charset_and_junk_is_refused() {
        let page = "<html><head><meta charset=\"shift_jis\"><title>案内</title></head><body>図書館は朝九時に開きます。</body></html>";
        let bytes = encoding_rs::SHIFT_JIS.encode(page).0.into_owned();
        let d = decode(&bytes, Kind::Html, None).unwrap();
        assert_eq!((d.text.as_str(), d.encoding), (page, "Shift_JIS"));
        // A forced encoding wins; bytes it cannot decode are a reason to skip.
        let d = decode("plai".as_bytes(), Kind::Text, Some(encoding_rs::UTF_16LE));
        assert!(d.is_ok());
        let e = decode(
            &[0x82, 0xa0, 0x82],
            Kind::Text,
            Some(encoding_rs::SHIFT_JIS),
        )
        .unwrap_err();
        assert!(e.contains("Shift_JIS"), "{e}");
        assert!(decode(b"a\0b c d", Kind::Text, None)
            .unwrap_err()
            .contains("binary"));
        // Binary bytes are not text in any encoding a guess may pick.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        let e = decode(&noise, Kind::Text, None).unwrap_err();
        assert!(e.contains("could not be told"), "{e}");
    }
}
