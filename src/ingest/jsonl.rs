//! One line of an ingest JSONL file: `{"id","text",["title","lang","meta","vector",
//! "generated_queries"]}` (the `xqdb add` format).

use crate::types::Passage;
use std::collections::BTreeMap;

/// Longest accepted line, in bytes (a passage of the largest size, JSON-escaped).
pub const MAX_LINE_BYTES: usize = 2 * crate::types::MAX_TEXT_BYTES;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    text: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    meta: Option<serde_json::Value>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    generated_queries: Option<BTreeMap<String, Vec<String>>>,
}

/// A parsed line: the passage, and either its vector or queries generated elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonlRow {
    /// The passage.
    pub passage: Passage,
    /// A vector computed elsewhere (then the passage is not encoded).
    pub vector: Option<Vec<f32>>,
    /// Queries generated elsewhere, as (language, text), languages in sorted order.
    pub queries: Option<Vec<(String, String)>>,
}

/// Parses one line; `Ok(None)` for a blank line. The error says what is wrong (the caller
/// adds the file and line number). Checks on the passage itself happen when it is stored.
pub fn parse_line(line: &[u8]) -> Result<Option<JsonlRow>, String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!(
            "line of {} bytes; the limit is {MAX_LINE_BYTES}",
            line.len()
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| format!("invalid UTF-8: {e}"))?;
    // A file saved "with BOM" starts with U+FEFF; it is not part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(text).map_err(|e| {
        // serde's message ends with "at line 1 column N"; the caller names the file's line.
        let message = e.to_string();
        let reason = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(reason, _)| reason);
        format!("{reason} (column {})", e.column())
    })?;
    if l.vector.is_some() && l.generated_queries.is_some() {
        return Err("a row has both a vector and generated_queries".into());
    }
    let queries = l.generated_queries.map(|by_lang| {
        by_lang
            .into_iter()
            .flat_map(|(lang, qs)| qs.into_iter().map(move |q| (lang.clone(), q)))
            .collect()
    });
    Ok(Some(JsonlRow {
        passage: Passage {
            id: l.id,
            title: l.title,
            text: l.text,
            lang: l.lang,
            meta: l.meta,
        },
        vector: l.vector,
        queries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_or_say_why_not() {
        let r = parse_line(
            br#"{"id":"a","text":"t","generated_queries":{"te":["q1","q2"],"ar":["q"]}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.queries.unwrap()[0], ("ar".to_string(), "q".to_string()));
        assert_eq!(parse_line(b"  \n").unwrap(), None);
        assert!(parse_line(b"\xff").unwrap_err().contains("UTF-8"));
        assert!(parse_line(br#"{"id":"a"}"#).unwrap_err().contains("text"));
        assert!(parse_line(br#"{"id":"a","text":"t","x":1}"#)
            .unwrap_err()
            .contains("unknown field"));
        let both = br#"{"id":"a","text":"t","vector":[1],"generated_queries":{}}"#;
        assert!(parse_line(both).unwrap_err().contains("both"));
    }
}
