//! TLS (`tls-port` and the other `tls-*` directives), on rustls with its *ring* provider.
//!
//! Two halves. [`TlsCfg`] holds the directives as given and [`server_config`] turns them into
//! one rustls `ServerConfig` at startup (main thread): certificates and key from PEM files,
//! client verification from the CA file or directory, protocol versions and cipher suites
//! mapped from Redis's (OpenSSL's) names to what rustls offers. [`Session`] is one TLS
//! connection, owned by the shard that accepted it and driven from its io_uring loop
//! (`server::worker`): it never touches a socket. Received ciphertext goes in
//! ([`Session::input`], plaintext comes out into the connection's read buffer for the
//! ordinary parser), and replies go in as plaintext ([`Session::output`], records come out
//! into the send buffer). No thread per connection, no blocking call.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

/// `tls-auth-clients`: whether a client must present a certificate signed by the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    No,
    /// Redis's default: a client without a valid certificate is refused.
    Yes,
    /// A certificate is checked when given, not required.
    Optional,
}

/// The `tls-*` directives as given (CONFIG GET shows them; `server_config` uses them).
#[derive(Debug, Clone)]
pub struct TlsCfg {
    pub port: u16,
    pub cert_file: String,
    pub key_file: String,
    pub key_file_pass: String,
    pub ca_cert_file: String,
    pub ca_cert_dir: String,
    pub auth_clients: AuthClients,
    pub protocols: String,
    pub ciphersuites: String,
    pub ciphers: String,
    pub prefer_server_ciphers: bool,
    pub session_caching: bool,
    pub session_cache_size: usize,
    /// `tls-replication`: this server connects to its master over TLS.
    pub replication: bool,
    pub client_cert_file: String,
    pub client_key_file: String,
}

impl Default for TlsCfg {
    fn default() -> Self {
        TlsCfg {
            port: 0,
            cert_file: String::new(),
            key_file: String::new(),
            key_file_pass: String::new(),
            ca_cert_file: String::new(),
            ca_cert_dir: String::new(),
            auth_clients: AuthClients::Yes,
            protocols: String::new(),
            ciphersuites: String::new(),
            ciphers: String::new(),
            prefer_server_ciphers: false,
            session_caching: true,
            session_cache_size: DEFAULT_CACHE_SIZE,
            replication: false,
            client_cert_file: String::new(),
            client_key_file: String::new(),
        }
    }
}

const DEFAULT_CACHE_SIZE: usize = 20480;

/// Every `tls-*` directive of Redis 7.0 and its default, as CONFIG GET shows it.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("tls-port", "0"),
    ("tls-cert-file", ""),
    ("tls-key-file", ""),
    ("tls-key-file-pass", ""),
    ("tls-client-cert-file", ""),
    ("tls-client-key-file", ""),
    ("tls-client-key-file-pass", ""),
    ("tls-dh-params-file", ""),
    ("tls-ca-cert-file", ""),
    ("tls-ca-cert-dir", ""),
    ("tls-auth-clients", "yes"),
    ("tls-replication", "no"),
    ("tls-cluster", "no"),
    ("tls-protocols", ""),
    ("tls-ciphers", ""),
    ("tls-ciphersuites", ""),
    ("tls-prefer-server-ciphers", "no"),
    ("tls-session-caching", "yes"),
    ("tls-session-cache-size", "20480"),
    ("tls-session-cache-timeout", "300"),
];

fn yes_no(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!(
            "argument must be 'yes' or 'no' for '{name}': '{v}'"
        )),
    }
}

impl TlsCfg {
    /// Applies one `tls-*` directive (config file, flag). Returns the value CONFIG GET shows
    /// and a warning line for the ones accepted without effect; `Err` refuses it with the
    /// reason; `Ok(None)` when `name` is not a TLS directive.
    pub fn apply(
        &mut self,
        name: &str,
        v: &str,
    ) -> Result<Option<(String, Option<String>)>, String> {
        let v = v.trim();
        let shown = v.to_string();
        let mut warn = None;
        match name {
            "tls-port" => {
                self.port = v
                    .parse()
                    .map_err(|_| format!("invalid value for 'tls-port': '{v}'"))?
            }
            "tls-cert-file" => self.cert_file = v.into(),
            "tls-key-file" => self.key_file = v.into(),
            "tls-key-file-pass" => {
                if !v.is_empty() {
                    return Err(ENCRYPTED_KEY.into());
                }
            }
            "tls-ca-cert-file" => self.ca_cert_file = v.into(),
            "tls-ca-cert-dir" => self.ca_cert_dir = v.into(),
            "tls-auth-clients" => {
                self.auth_clients = match v.to_ascii_lowercase().as_str() {
                    "yes" => AuthClients::Yes,
                    "no" => AuthClients::No,
                    "optional" => AuthClients::Optional,
                    _ => {
                        return Err(format!(
                        "argument must be one of yes, no, optional for 'tls-auth-clients': '{v}'"
                    ))
                    }
                };
                return Ok(Some((v.to_ascii_lowercase(), None)));
            }
            "tls-protocols" => {
                protocols(v)?;
                self.protocols = v.into();
            }
            "tls-ciphersuites" => {
                suites_13(v)?;
                self.ciphersuites = v.into();
            }
            "tls-ciphers" => {
                let (_, skipped) = suites_12(v)?;
                if !skipped.is_empty() {
                    warn = Some(format!(
                        "'tls-ciphers {v}': {} not offered by rustls (it has only ECDHE with \
                         AES-GCM or ChaCha20-Poly1305 for TLSv1.2); skipped",
                        skipped.join(", ")
                    ));
                }
                self.ciphers = v.into();
            }
            "tls-prefer-server-ciphers" => self.prefer_server_ciphers = yes_no(name, v)?,
            "tls-session-caching" => self.session_caching = yes_no(name, v)?,
            "tls-session-cache-size" => {
                self.session_cache_size = v
                    .parse()
                    .map_err(|_| format!("invalid value for '{name}': '{v}'"))?
            }
            "tls-session-cache-timeout" => {
                v.parse::<u64>()
                    .map_err(|_| format!("invalid value for '{name}': '{v}'"))?;
                if v != "300" {
                    warn = Some(format!(
                        "'tls-session-cache-timeout {v}' is not supported: rustls keeps a \
                         cached session until the cache is full (resumed sessions are still \
                         bounded by the ticket lifetime)"
                    ));
                }
            }
            "tls-replication" => self.replication = yes_no(name, v)?,
            "tls-cluster" => {
                if yes_no(name, v)? {
                    warn = Some(
                        "'tls-cluster yes' has no effect: cluster mode is not supported".into(),
                    );
                }
            }
            "tls-client-cert-file" => self.client_cert_file = v.into(),
            "tls-client-key-file" => self.client_key_file = v.into(),
            "tls-client-key-file-pass" => {
                if !v.is_empty() {
                    return Err(ENCRYPTED_KEY.replace("tls-key-file", "tls-client-key-file"));
                }
            }
            "tls-dh-params-file" => {
                if !v.is_empty() {
                    warn = Some(
                        "'tls-dh-params-file' is not used: rustls offers no finite-field DHE \
                         cipher suites (ECDHE only)"
                            .into(),
                    );
                }
            }
            _ => return Ok(None),
        }
        Ok(Some((shown, warn)))
    }
}

const ENCRYPTED_KEY: &str = "'tls-key-file-pass' is refused: encrypted private keys are not \
     supported (rustls reads unencrypted PEM keys only); decrypt the key with `openssl pkey \
     -in KEY -out PLAIN_KEY` and point tls-key-file at the result";

/// The rustls protocol versions for `tls-protocols` (empty: TLSv1.2 and TLSv1.3, Redis's
/// default). TLSv1 and TLSv1.1 are refused: rustls does not implement them.
fn protocols(v: &str) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    if v.trim().is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut out = Vec::new();
    for p in v.split_whitespace() {
        match p.to_ascii_lowercase().as_str() {
            "tlsv1.2" => out.push(&rustls::version::TLS12),
            "tlsv1.3" => out.push(&rustls::version::TLS13),
            "tlsv1" | "tlsv1.1" => {
                return Err(format!(
                    "'tls-protocols {v}' is refused: {p} is not supported (rustls implements \
                     TLSv1.2 and TLSv1.3 only)"
                ))
            }
            _ => {
                return Err(
                    "Invalid tls-protocols specified. Use a combination of 'TLSv1', \
                            'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'."
                        .into(),
                )
            }
        }
    }
    Ok(out)
}

/// TLSv1.3 suites by their IANA names, as `tls-ciphersuites` lists them.
const SUITES_13: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_AES_256_GCM_SHA384",
        provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLSv1.2 suites by their OpenSSL names, as `tls-ciphers` lists them.
const SUITES_12: &[(&str, SupportedCipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// `tls-ciphersuites` (colon-separated IANA names; empty: all three rustls has). A name
/// rustls lacks (the CCM suites) is refused: the list would not mean what it says.
fn suites_13(v: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    if v.trim().is_empty() {
        return Ok(SUITES_13.iter().map(|(_, s)| *s).collect());
    }
    let mut out = Vec::new();
    for name in v.split(':').map(str::trim).filter(|n| !n.is_empty()) {
        match SUITES_13.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, s)) => out.push(*s),
            None => {
                return Err(format!(
                    "'tls-ciphersuites {v}' is refused: '{name}' is not offered by rustls \
                     (it has {})",
                    SUITES_13
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
    }
    Ok(out)
}

/// `tls-ciphers` (OpenSSL's cipher-list syntax, TLSv1.2): exact suite names, the keywords
/// `DEFAULT`/`ALL`/`HIGH`/`ECDHE`/`EECDH`/`kECDHE` (every rustls suite), `AESGCM`,
/// `CHACHA20`, `aECDSA`/`ECDSA`, `aRSA`, and `!X`/`-X` exclusions; `@STRENGTH`-style
/// directives change nothing. Returns the suites in order and the positive names that
/// select nothing rustls has (skipped with a warning); an empty result is refused.
fn suites_12(v: &str) -> Result<(Vec<SupportedCipherSuite>, Vec<String>), String> {
    let all = || SUITES_12.iter().map(|(_, s)| *s).collect::<Vec<_>>();
    if v.trim().is_empty() {
        return Ok((all(), Vec::new()));
    }
    let select = |word: &str| -> Vec<SupportedCipherSuite> {
        let w = word.to_ascii_uppercase();
        SUITES_12
            .iter()
            .filter(|(n, _)| match w.as_str() {
                "DEFAULT" | "ALL" | "HIGH" | "ECDHE" | "EECDH" | "KECDHE" | "AEAD" => true,
                "AESGCM" | "AES" => n.contains("GCM"),
                "CHACHA20" => n.contains("CHACHA20"),
                "AECDSA" | "ECDSA" => n.contains("ECDSA"),
                "ARSA" | "RSA" => n.contains("-RSA-"),
                "AES256" => n.contains("AES256"),
                "AES128" => n.contains("AES128"),
                _ => n.eq_ignore_ascii_case(word),
            })
            .map(|(_, s)| *s)
            .collect()
    };
    let mut out: Vec<SupportedCipherSuite> = Vec::new();
    let mut removed: Vec<SupportedCipherSuite> = Vec::new();
    let mut skipped = Vec::new();
    for word in v
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if word.starts_with('@') {
            continue;
        }
        if let Some(x) = word.strip_prefix('!').or_else(|| word.strip_prefix('-')) {
            // Excluding what rustls never offers (aNULL, MD5, RC4...) is already true.
            let sel = select(x);
            out.retain(|s| !sel.contains(s));
            if word.starts_with('!') {
                removed.extend(sel);
            }
            continue;
        }
        let sel = select(word.trim_start_matches('+'));
        if sel.is_empty() {
            skipped.push(word.to_string());
        }
        for s in sel {
            if !out.contains(&s) && !removed.contains(&s) {
                out.push(s);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "'tls-ciphers {v}' is refused: it selects no TLSv1.2 cipher suite rustls offers \
             ({})",
            SUITES_12
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((out, skipped))
}

fn load_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("Failed to load {what} '{path}': {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("Failed to load {what} '{path}': {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "Failed to load {what} '{path}': no certificate in it"
        ));
    }
    Ok(certs)
}

fn load_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let encrypted = std::fs::read_to_string(path).is_ok_and(|t| {
            t.contains("ENCRYPTED PRIVATE KEY") || t.contains("Proc-Type: 4,ENCRYPTED")
        });
        if encrypted {
            ENCRYPTED_KEY.replace("'tls-key-file-pass' is refused: ", &format!("'{path}': "))
        } else {
            format!("Failed to load private key '{path}': {e}")
        }
    })
}

/// The CA certificates of `tls-ca-cert-file` and every PEM file in `tls-ca-cert-dir`.
fn load_roots(cfg: &TlsCfg) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut add = |certs: Vec<CertificateDer<'static>>, path: &str| -> Result<(), String> {
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("Failed to load CA certificate from '{path}': {e}"))?;
        }
        Ok(())
    };
    if !cfg.ca_cert_file.is_empty() {
        add(
            load_certs(&cfg.ca_cert_file, "CA certificate(s)")?,
            &cfg.ca_cert_file,
        )?;
    }
    if !cfg.ca_cert_dir.is_empty() {
        let dir = std::fs::read_dir(&cfg.ca_cert_dir)
            .map_err(|e| format!("Failed to read tls-ca-cert-dir '{}': {e}", cfg.ca_cert_dir))?;
        for entry in dir.flatten() {
            let p = entry.path();
            if !p.is_file() {
                continue;
            }
            let path = p.display().to_string();
            // As OpenSSL's CA directory: files that hold no certificate are passed over.
            if let Ok(certs) = load_certs(&path, "CA certificate(s)") {
                add(certs, &path)?;
            }
        }
    }
    Ok(roots)
}

/// Builds the server's TLS configuration from the directives (startup). Errors name the
/// file or setting at fault.
pub fn server_config(cfg: &TlsCfg) -> Result<Arc<ServerConfig>, String> {
    if cfg.cert_file.is_empty() {
        return Err("Failed to configure TLS: no tls-cert-file configured".into());
    }
    if cfg.key_file.is_empty() {
        return Err("Failed to configure TLS: no tls-key-file configured".into());
    }
    let mut suites = suites_13(&cfg.ciphersuites)?;
    suites.extend(suites_12(&cfg.ciphers)?.0);
    // rustls 0.23.48 marks the *ring* provider deprecated because it lacks the
    // post-quantum key exchange (X25519MLKEM768) of aws-lc-rs; aws-lc-rs needs cmake and a
    // long C build. Classical ECDHE (X25519, P-256, P-384) is what Redis's OpenSSL offers.
    #[allow(deprecated)]
    let mut prov = provider::default_provider();
    prov.cipher_suites = suites;
    let prov = Arc::new(prov);
    let versions = protocols(&cfg.protocols)?;
    let builder = ServerConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("Failed to configure TLS: {e}"))?;
    let builder = match cfg.auth_clients {
        AuthClients::No => builder.with_no_client_auth(),
        AuthClients::Yes | AuthClients::Optional => {
            if cfg.ca_cert_file.is_empty() && cfg.ca_cert_dir.is_empty() {
                return Err("Failed to configure TLS: either tls-ca-cert-file or \
                            tls-ca-cert-dir must be specified when tls-auth-clients is \
                            enabled (Redis's default is yes)"
                    .into());
            }
            let roots = Arc::new(load_roots(cfg)?);
            let mut v = WebPkiClientVerifier::builder_with_provider(roots, prov);
            if cfg.auth_clients == AuthClients::Optional {
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| format!("Failed to configure TLS: CA certificates: {e}"))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let certs = load_certs(&cfg.cert_file, "certificate")?;
    let key = load_key(&cfg.key_file)?;
    let mut sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("Failed to configure TLS: {}: {e}", cfg.cert_file))?;
    sc.ignore_client_order = cfg.prefer_server_ciphers;
    if cfg.session_caching {
        // 0 means no limit to OpenSSL; rustls needs a bound.
        let size = match cfg.session_cache_size {
            0 => 1 << 20,
            n => n,
        };
        sc.session_storage = ServerSessionMemoryCache::new(size);
    } else {
        sc.session_storage = Arc::new(NoServerSessionStorage {});
        sc.send_tls13_tickets = 0;
    }
    Ok(Arc::new(sc))
}

/// Builds the TLS client configuration for the link to a master (`tls-replication yes`),
/// as Redis's: the master's certificate must chain to `tls-ca-cert-file`/`-dir`; the client
/// certificate is `tls-client-cert-file`/`-key-file`, else `tls-cert-file`/`-key-file`
/// (for masters with `tls-auth-clients yes`). Like Redis (OpenSSL without a host check),
/// the certificate is not matched against the master's host name or address.
pub fn client_config(cfg: &TlsCfg) -> Result<Arc<rustls::ClientConfig>, String> {
    if cfg.ca_cert_file.is_empty() && cfg.ca_cert_dir.is_empty() {
        return Err(
            "Failed to configure TLS: tls-replication needs tls-ca-cert-file or \
                    tls-ca-cert-dir to verify the master's certificate"
                .into(),
        );
    }
    let mut suites = suites_13(&cfg.ciphersuites)?;
    suites.extend(suites_12(&cfg.ciphers)?.0);
    #[allow(deprecated)]
    let mut prov = provider::default_provider();
    prov.cipher_suites = suites;
    let prov = Arc::new(prov);
    let roots = Arc::new(load_roots(cfg)?);
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, prov.clone())
        .build()
        .map_err(|e| format!("Failed to configure TLS: CA certificates: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(prov)
        .with_protocol_versions(&protocols(&cfg.protocols)?)
        .map_err(|e| format!("Failed to configure TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)));
    let (cert, key) = match cfg.client_cert_file.is_empty() {
        false => (&cfg.client_cert_file, &cfg.client_key_file),
        true => (&cfg.cert_file, &cfg.key_file),
    };
    let cc = if cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder
            .with_client_auth_cert(load_certs(cert, "certificate")?, load_key(key)?)
            .map_err(|e| format!("Failed to configure TLS: {cert}: {e}"))?
    };
    Ok(Arc::new(cc))
}

/// The master's certificate checked as OpenSSL checks it for Redis: a valid chain to the
/// CA, in its validity period; a name mismatch is not an error.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether `name` is one of the `tls-*` settings.
pub fn is_setting(name: &str) -> bool {
    DEFAULTS.iter().any(|(n, _)| *n == name)
}

/// The TLS settings in force and the rustls configurations built from them: set at
/// startup, replaced whole by CONFIG SET of a `tls-*` setting (new connections and new
/// links use the new ones; established sessions keep theirs, as with Redis).
pub struct Live {
    pub cfg: TlsCfg,
    pub server: Option<Arc<ServerConfig>>,
    pub client: Option<Arc<rustls::ClientConfig>>,
}

impl Live {
    /// Builds both configurations `cfg` asks for; errors name the file or setting.
    pub fn build(cfg: TlsCfg) -> Result<Live, String> {
        let server = match cfg.port {
            0 => None,
            _ => Some(server_config(&cfg)?),
        };
        let client = match cfg.replication {
            false => None,
            true => Some(client_config(&cfg)?),
        };
        Ok(Live {
            cfg,
            server,
            client,
        })
    }

    /// CONFIG SET of `tls-*` settings, all at once (a certificate and its key change
    /// together): the new settings are checked and built before anything changes. Returns
    /// the previous state (for a rollback) and the values CONFIG GET shows from now on; an
    /// error names the setting at fault.
    #[allow(clippy::type_complexity)]
    pub fn set_many(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<(Live, Vec<(String, String)>), (String, String)> {
        let mut cfg = self.cfg.clone();
        let mut shown = Vec::new();
        for (name, v) in pairs {
            let fail = |e: String| (name.clone(), e);
            match cfg.apply(name, v).map_err(fail)? {
                Some((s, warn)) => {
                    if let Some(w) = warn {
                        crate::log::warning(&format!("CONFIG SET {w}"));
                    }
                    shown.push((name.clone(), s));
                }
                None => return Err(fail("Unknown TLS setting".into())),
            }
        }
        if cfg.port != self.cfg.port {
            return Err((
                "tls-port".into(),
                "tls-port cannot change at run time (its listeners are bound at startup): \
                 restart with the new value"
                    .into(),
            ));
        }
        let next = Live::build(cfg).map_err(|e| {
            crate::log::warning(&format!("Unable to update TLS configuration: {e}"));
            let name = pairs.first().map(|p| p.0.clone()).unwrap_or_default();
            (name, format!("Unable to update TLS configuration: {e}"))
        })?;
        Ok((std::mem::replace(self, next), shown))
    }
}

/// One TLS connection's state, owned by the shard that accepted it (or, for the link to
/// a master, the shard the link thread handed it to).
pub struct Session {
    conn: rustls::Connection,
    /// The ciphertext buffer a one-shot receive fills (`None` while the receive owns it).
    pub cbuf: Option<BytesMut>,
}

impl Session {
    pub fn new(cfg: &Arc<ServerConfig>) -> Result<Session, String> {
        let conn = rustls::ServerConnection::new(cfg.clone()).map_err(|e| e.to_string())?;
        Ok(Session {
            conn: conn.into(),
            cbuf: Some(BytesMut::new()),
        })
    }

    /// A client session whose handshake the link thread already did (`tls-replication`);
    /// the plaintext it already decrypted is appended to `plain`.
    pub fn client(mut conn: rustls::ClientConnection, plain: &mut Vec<u8>) -> Session {
        let mut buf = [0u8; 16384];
        while let Ok(n) = conn.reader().read(&mut buf) {
            match buf.get(..n) {
                Some(b) if n > 0 => plain.extend_from_slice(b),
                _ => break,
            }
        }
        Session {
            conn: conn.into(),
            cbuf: Some(BytesMut::new()),
        }
    }

    /// Feeds received ciphertext through the TLS state machine and appends the plaintext
    /// it carried to `plain`. An `Err` is fatal for the connection (its alert, if any,
    /// is left for `output` to send).
    pub fn input(&mut self, mut data: &[u8], plain: &mut BytesMut) -> Result<(), String> {
        while !data.is_empty() {
            let n = self.conn.read_tls(&mut data).map_err(|e| e.to_string())?;
            let st = self.conn.process_new_packets().map_err(|e| e.to_string())?;
            let want = st.plaintext_bytes_to_read();
            if want > 0 {
                let at = plain.len();
                plain.resize(at + want, 0);
                let got = match plain.get_mut(at..) {
                    Some(dst) => self.conn.reader().read(dst).map_err(|e| e.to_string())?,
                    None => 0,
                };
                plain.truncate(at + got);
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Encrypts `plain` and appends every TLS record due (handshake messages, alerts,
    /// application data) to `out`.
    pub fn output(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        loop {
            while self.conn.wants_write() {
                self.conn.write_tls(out).map_err(|e| e.to_string())?;
            }
            if plain.is_empty() {
                return Ok(());
            }
            // rustls buffers a bounded amount at a time; drain it between chunks.
            let n = self.conn.writer().write(plain).map_err(|e| e.to_string())?;
            if n == 0 && !self.conn.wants_write() {
                return Err("TLS writer refused data".into());
            }
            plain = plain.get(n..).unwrap_or_default();
        }
    }

    /// Records are due (handshake, alert) even with no reply to send.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_lists_map_to_rustls() {
        assert_eq!(suites_12("").unwrap().0.len(), 6);
        let (s, skipped) = suites_12("DEFAULT:!MEDIUM:!aNULL").unwrap();
        assert_eq!(s.len(), 6);
        assert!(skipped.is_empty());
        let (s, _) = suites_12("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384").unwrap();
        assert_eq!(s.len(), 2);
        let (s, skipped) = suites_12("HIGH:!CHACHA20:DHE-RSA-AES256-SHA").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(skipped, vec!["DHE-RSA-AES256-SHA".to_string()]);
        assert!(suites_12("DHE-RSA-AES256-SHA:RC4-MD5").is_err());
        assert_eq!(suites_13("TLS_AES_128_GCM_SHA256").unwrap().len(), 1);
        assert!(suites_13("TLS_AES_128_CCM_SHA256").is_err());
        assert_eq!(protocols("TLSv1.2 TLSv1.3").unwrap().len(), 2);
        assert!(protocols("TLSv1.1").unwrap_err().contains("not supported"));
        assert!(protocols("SSLv3")
            .unwrap_err()
            .contains("Invalid tls-protocols"));
    }

    #[test]
    fn directives() {
        let mut t = TlsCfg::default();
        assert_eq!(t.apply("tls-port", "6380").unwrap().unwrap().0, "6380");
        assert_eq!(t.port, 6380);
        assert!(t.apply("tls-key-file-pass", "x").is_err());
        assert!(t.apply("tls-key-file-pass", "").is_ok());
        t.apply("tls-replication", "yes").unwrap();
        assert!(t.replication);
        assert!(t.apply("tls-replication", "maybe").is_err());
        assert!(t.apply("tls-client-key-file-pass", "x").is_err());
        assert!(client_config(&t)
            .unwrap_err()
            .contains("tls-replication needs tls-ca-cert-file"));
        assert!(t.apply("tls-auth-clients", "maybe").is_err());
        t.apply("tls-auth-clients", "OPTIONAL").unwrap();
        assert_eq!(t.auth_clients, AuthClients::Optional);
        assert!(t
            .apply("tls-session-cache-timeout", "60")
            .unwrap()
            .unwrap()
            .1
            .is_some());
        assert!(t.apply("port", "1").unwrap().is_none());
        assert!(server_config(&TlsCfg::default()).is_err());
    }
}
