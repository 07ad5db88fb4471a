//! Body encoding: snapshot <-> JSON <-> zstd, with every decoding bound enforced.

use std::io::Read;

use crate::delta::{Delta, PROTOCOL_VERSION};
use crate::limits::{LimitError, MAX_DECOMPRESSED_BYTES, ZSTD_WINDOW_LOG_MAX};
use crate::schema::{Snapshot, SCHEMA_VERSION};

/// How the body bytes are encoded (the HTTP `Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Zstd,
}

impl BodyEncoding {
    /// From a `Content-Encoding` header value; `None` for anything else.
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Some(BodyEncoding::Identity),
            Some(v) if v.is_empty() || v == "identity" => Some(BodyEncoding::Identity),
            Some(v) if v == "zstd" => Some(BodyEncoding::Zstd),
            Some(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("body is not valid zstd: {0}")]
    Zstd(String),
    #[error("{path}: {message}")]
    Json { path: String, message: String },
    #[error("unsupported schema_version {found}; this collector reads version {SCHEMA_VERSION}")]
    SchemaVersion { found: u32 },
    #[error("unsupported protocol {found}; this endpoint reads protocol {PROTOCOL_VERSION}")]
    Protocol { found: u32 },
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl DecodeError {
    /// The field the error names, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Json { path, .. } => Some(path),
            DecodeError::Limit(e) => Some(&e.field),
            DecodeError::SchemaVersion { .. } => Some("schema_version"),
            DecodeError::Protocol { .. } => Some("protocol"),
            _ => None,
        }
    }
}

/// Decompresses `body` refusing more than `limit` output bytes and windows over 8 MiB.
pub fn zstd_decompress_bounded(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut decoder =
        zstd::stream::read::Decoder::new(body).map_err(|e| DecodeError::Zstd(e.to_string()))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|e| DecodeError::Zstd(e.to_string()))?;
    // A frame that declares more than the limit is refused before any decompression.
    // A declared size is only a hint otherwise (the count below is what holds): it sizes
    // the buffer once. Without one, chunks are kept apart and joined at the end, so a
    // bomb never costs more than the limit (a doubling Vec with a copying realloc held
    // 64 + 128 MiB at once).
    let declared = zstd::zstd_safe::get_frame_content_size(body).ok().flatten();
    if declared.is_some_and(|size| size > limit as u64) {
        return Err(DecodeError::DecompressedTooLarge { limit });
    }
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    const CHUNK: usize = 256 * 1024;
    // One byte over the declared size, so an honest frame ends inside its first chunk.
    let mut chunk_len = declared.map_or(CHUNK, |size| (size as usize).saturating_add(1));
    loop {
        let mut chunk = vec![0u8; chunk_len.min(limit.saturating_add(1))];
        chunk_len = CHUNK;
        let mut filled = 0;
        while filled < chunk.len() {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DecodeError::Zstd(e.to_string())),
            }
        }
        total += filled;
        if total > limit {
            return Err(DecodeError::DecompressedTooLarge { limit });
        }
        let done = filled < chunk.len();
        chunk.truncate(filled);
        chunks.push(chunk);
        if done {
            break;
        }
    }
    let out = if chunks.len() == 1 {
        chunks.pop().unwrap_or_default()
    } else {
        chunks.concat()
    };
    Ok(out)
}

/// Decodes a JSON snapshot, naming the failing field, then enforces the schema version
/// and every limit.
pub fn decode_snapshot_json(json: &[u8]) -> Result<Snapshot, DecodeError> {
    // The fast path is plain serde_json; path tracking costs about as much as the parse
    // itself, so it runs only to name the field of a body that already failed.
    let snapshot: Snapshot = match serde_json::from_slice(json) {
        Ok(s) => s,
        Err(plain) => return Err(json_error_with_path::<Snapshot>(json, plain)),
    };
    if snapshot.schema_version != SCHEMA_VERSION {
        return Err(DecodeError::SchemaVersion {
            found: snapshot.schema_version,
        });
    }
    snapshot.check_limits()?;
    Ok(snapshot)
}

fn json_error_with_path<T: serde::de::DeserializeOwned>(
    json: &[u8],
    plain: serde_json::Error,
) -> DecodeError {
    let mut de = serde_json::Deserializer::from_slice(json);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            DecodeError::Json {
                path: if path == "." { "body".into() } else { path },
                message: e.into_inner().to_string(),
            }
        }
        // The value parsed; what failed was the end (trailing bytes).
        Ok(_) => DecodeError::Json {
            path: "body".into(),
            message: plain.to_string(),
        },
    }
}

/// The whole collector-side decode: bounded decompression, then JSON, then limits.
pub fn decode_body(body: &[u8], encoding: BodyEncoding) -> Result<Snapshot, DecodeError> {
    match encoding {
        BodyEncoding::Identity => {
            if body.len() > MAX_DECOMPRESSED_BYTES {
                return Err(DecodeError::DecompressedTooLarge {
                    limit: MAX_DECOMPRESSED_BYTES,
                });
            }
            decode_snapshot_json(body)
        }
        BodyEncoding::Zstd => {
            let json = zstd_decompress_bounded(body, MAX_DECOMPRESSED_BYTES)?;
            decode_snapshot_json(&json)
        }
    }
}

/// The agent-side encode: JSON then zstd at a level that costs little CPU on a laptop.
pub fn encode_body(snapshot: &Snapshot) -> Result<Vec<u8>, std::io::Error> {
    let json = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    zstd::bulk::compress(&json, 6)
}

/// Decodes a JSON delta, naming the failing field, then enforces the protocol and schema
/// versions and every limit.
pub fn decode_delta_json(json: &[u8]) -> Result<Delta, DecodeError> {
    let delta: Delta = match serde_json::from_slice(json) {
        Ok(d) => d,
        Err(plain) => return Err(json_error_with_path::<Delta>(json, plain)),
    };
    if delta.protocol != PROTOCOL_VERSION {
        return Err(DecodeError::Protocol {
            found: delta.protocol,
        });
    }
    if delta.schema_version != SCHEMA_VERSION {
        return Err(DecodeError::SchemaVersion {
            found: delta.schema_version,
        });
    }
    delta.check_limits()?;
    Ok(delta)
}

/// The collector-side decode of a delta: bounded decompression, JSON, limits.
pub fn decode_delta_body(body: &[u8], encoding: BodyEncoding) -> Result<Delta, DecodeError> {
    match encoding {
        BodyEncoding::Identity => {
            if body.len() > MAX_DECOMPRESSED_BYTES {
                return Err(DecodeError::DecompressedTooLarge {
                    limit: MAX_DECOMPRESSED_BYTES,
                });
            }
            decode_delta_json(body)
        }
        BodyEncoding::Zstd => {
            let json = zstd_decompress_bounded(body, MAX_DECOMPRESSED_BYTES)?;
            decode_delta_json(&json)
        }
    }
}

/// The agent-side encode of a delta, as [`encode_body`] does a snapshot.
pub fn encode_delta(delta: &Delta) -> Result<Vec<u8>, std::io::Error> {
    let json = serde_json::to_vec(delta).map_err(std::io::Error::other)?;
    zstd::bulk::compress(&json, 6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn sample() -> Snapshot {
        Snapshot::empty("agent-1", 1, Utc::now())
    }

    #[test]
    fn round_trip_through_zstd() {
        let s = sample();
        let body = encode_body(&s).unwrap();
        let back = decode_body(&body, BodyEncoding::Zstd).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn zip_bomb_is_refused() {
        let zeros = vec![b' '; 2 * 1024 * 1024];
        let bomb = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(bomb.len() < 4096, "bomb is {} bytes", bomb.len());
        match zstd_decompress_bounded(&bomb, 1024 * 1024) {
            Err(DecodeError::DecompressedTooLarge { limit }) => assert_eq!(limit, 1024 * 1024),
            other => panic!("expected too large, got {other:?}"),
        }
    }

    /// A frame without a declared size (streaming encoder), as an attacker would send.
    fn streamed(data: &[u8]) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        e.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut e, data).unwrap();
        let out = e.finish().unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&out).ok().flatten(),
            None
        );
        out
    }

    #[test]
    fn zip_bomb_without_a_declared_size_is_refused_at_the_limit() {
        let bomb = streamed(&vec![b' '; 3 * 1024 * 1024]);
        assert!(matches!(
            zstd_decompress_bounded(&bomb, 1024 * 1024),
            Err(DecodeError::DecompressedTooLarge { .. })
        ));
    }

    #[test]
    fn sizes_at_the_limit_pass_whatever_the_frame_declares() {
        let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        for body in [zstd::bulk::compress(&data, 3).unwrap(), streamed(&data)] {
            assert_eq!(zstd_decompress_bounded(&body, data.len()).unwrap(), data);
            assert!(matches!(
                zstd_decompress_bounded(&body, data.len() - 1),
                Err(DecodeError::DecompressedTooLarge { .. })
            ));
        }
        assert_eq!(zstd_decompress_bounded(&streamed(b""), 10).unwrap(), b"");
    }

    #[test]
    fn duplicate_keys_are_refused_with_the_field() {
        let mut v = serde_json::to_string(&sample()).unwrap();
        v.insert_str(1, "\"seq\":5,");
        let err = decode_snapshot_json(v.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate field `seq`"), "{err}");
    }

    #[test]
    fn nested_errors_name_the_path() {
        let mut s = sample();
        s.software = crate::schema::Section::collected(vec![Default::default()]);
        let mut v: serde_json::Value = serde_json::to_value(&s).unwrap();
        v["software"]["data"][0]["version"] = serde_json::json!(42);
        let err = decode_snapshot_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.field(), Some("software.data[0].version"), "{err}");
    }

    #[test]
    fn unknown_fields_and_trailing_garbage_are_refused() {
        let mut v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(decode_snapshot_json(&serde_json::to_vec(&v).unwrap()).is_err());
        let mut bytes = serde_json::to_vec(&sample()).unwrap();
        bytes.extend_from_slice(b" {}");
        assert!(decode_snapshot_json(&bytes).is_err());
    }

    #[test]
    fn future_schema_version_is_refused() {
        let mut s = sample();
        s.schema_version = 2;
        let err = decode_snapshot_json(&serde_json::to_vec(&s).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::SchemaVersion { found: 2 }));
    }

    #[test]
    fn encoding_header() {
        assert_eq!(
            BodyEncoding::from_header(None),
            Some(BodyEncoding::Identity)
        );
        assert_eq!(
            BodyEncoding::from_header(Some("ZSTD")),
            Some(BodyEncoding::Zstd)
        );
        assert_eq!(BodyEncoding::from_header(Some("gzip")), None);
    }
}
