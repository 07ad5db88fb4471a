//! TLS for the collector: the operator's certificate, or a private CA and server
//! certificate made on first start, whose fingerprint agents pin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

pub const CA_CERT_FILE: &str = "tls/ca.pem";
const CA_KEY_FILE: &str = "tls/ca.key";
const SERVER_CERT_FILE: &str = "tls/server.pem";
const SERVER_KEY_FILE: &str = "tls/server.key";

/// SHA-256 of a DER certificate, lower-case hex: what `--ca-fingerprint` takes.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Creates the private CA and a server certificate for `names` (DNS names and IPs) in
/// `data_dir/tls/` unless they exist. Returns the CA fingerprint.
pub fn ensure_private_ca(data_dir: &Path, names: &[String]) -> Result<String> {
    let ca_path = data_dir.join(CA_CERT_FILE);
    if ca_path.exists() {
        if !data_dir.join(SERVER_CERT_FILE).exists() {
            bail!("{} exists but {} does not; restore it or remove the tls directory to make a new CA (agents must then re-pin)", ca_path.display(), SERVER_CERT_FILE);
        }
        let der = CertificateDer::from_pem_file(&ca_path)
            .with_context(|| format!("read {}", ca_path.display()))?;
        return Ok(fingerprint(&der));
    }
    std::fs::create_dir_all(data_dir.join("tls"))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Census collector private CA");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Census");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let now = time_now();
    ca_params.not_before = now - rcgen_days(1);
    ca_params.not_after = now + rcgen_days(3650);
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut server_params = rcgen::CertificateParams::new(names.to_vec())?;
    server_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names
            .first()
            .cloned()
            .unwrap_or_else(|| "census-collector".into()),
    );
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server_params.not_before = now - rcgen_days(1);
    server_params.not_after = now + rcgen_days(825);
    let server_key = rcgen::KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    write_private(&data_dir.join(CA_KEY_FILE), &ca_key.serialize_pem())?;
    write_private(&data_dir.join(SERVER_KEY_FILE), &server_key.serialize_pem())?;
    std::fs::write(
        data_dir.join(SERVER_CERT_FILE),
        format!("{}{}", server.pem(), ca.pem()),
    )?;
    // The CA certificate last: its presence marks a complete set.
    std::fs::write(&ca_path, ca.pem())?;
    Ok(fingerprint(ca.der()))
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rcgen_days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// The server certificate and key paths: the operator's, or the private CA's.
pub fn server_files(
    data_dir: &Path,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf)> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok((c, k)),
        (None, None) => Ok((
            data_dir.join(SERVER_CERT_FILE),
            data_dir.join(SERVER_KEY_FILE),
        )),
        _ => bail!("--tls-cert and --tls-key go together"),
    }
}

pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("read {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parse {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("read key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
