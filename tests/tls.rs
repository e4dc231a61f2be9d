//! TLS on `tls-port`: redis-cli and a rustls client against the real binary, with
//! certificates made by the openssl CLI for this run (a CA, a server certificate for
//! 127.0.0.1, a client certificate). Plain and TLS ports at once, `port 0` with a TLS port,
//! client certificates, hostile clients on the TLS port, and the settings refused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{free_port, redis_cli, shard_counts, wait_for, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The certificates of this test run (made once).
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shardis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| openssl_in(&dir, args);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("client.ext"),
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=shardis test CA",
        ]);
        for who in ["server", "client"] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.crt"),
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
            ]);
        }
        dir
    })
}

fn path(name: &str) -> String {
    certs().join(name).display().to_string()
}

/// Flags for a TLS port with this run's server certificate.
fn tls_flags(tls_port: u16, auth: &str) -> Vec<String> {
    [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        auth,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(shards: usize, auth: &str) -> (Server, u16) {
    start_with(shards, auth, &[])
}

fn start_with(shards: usize, auth: &str, extra: &[&str]) -> (Server, u16) {
    let tls_port = free_port();
    let flags = tls_flags(tls_port, auth);
    let mut refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    refs.extend_from_slice(extra);
    (Server::start_with(shards, &refs), tls_port)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client to the TLS port, trusting the test CA; with the client certificate
/// when `cert`.
fn connect(port: u16, cert: bool) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let prov = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(prov)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = if cert {
        let chain = CertificateDer::pem_file_iter(path("client.crt"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(path("client.key")).unwrap();
        b.with_client_auth_cert(chain, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    // Finish the handshake now, so a refused certificate shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Reads until `n` bytes arrived (or EOF / error).
fn read_exactly(s: &mut Tls, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65536];
    while out.len() < n {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
        }
    }
    out
}

fn tls_cli(port: u16, args: &[&str]) -> Option<String> {
    let bin = redis_cli()?;
    let out = Command::new(bin)
        .args([
            "--tls",
            "--cacert",
            &path("ca.crt"),
            "-p",
            &port.to_string(),
        ])
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

#[test]
fn redis_cli_over_tls_beside_the_plain_port() {
    if redis_cli().is_none() {
        eprintln!("redis-cli not installed: skipped");
        return;
    }
    for shards in shard_counts() {
        let (srv, tls_port) = start(shards, "no");
        assert_eq!(tls_cli(tls_port, &["ping"]).unwrap(), "PONG");
        assert_eq!(tls_cli(tls_port, &["set", "k", "over-tls"]).unwrap(), "OK");
        assert_eq!(tls_cli(tls_port, &["get", "k"]).unwrap(), "over-tls");
        // The same keyspace through the plain port.
        assert_eq!(common::cli(srv.port, &["get", "k"]).trim_end(), "over-tls");
        // CONFIG GET shows the TLS settings in force.
        let got = tls_cli(tls_port, &["config", "get", "tls-port"]).unwrap();
        assert_eq!(got, format!("tls-port\n{tls_port}"));
        let got = tls_cli(tls_port, &["config", "get", "tls-auth-clients"]).unwrap();
        assert_eq!(got, "tls-auth-clients\nno");
        // Without --tls the client gets no Redis reply from the TLS port.
        let plain = common::cli(tls_port, &["ping"]);
        assert!(!plain.contains("PONG"), "{plain}");
    }
}

#[test]
fn large_values_and_pipelines_round_trip() {
    // Both receive paths: multishot chunks from the buffer pool, one-shot buffers.
    let modes = shard_counts()
        .into_iter()
        .flat_map(|n| [(n, "multishot"), (n, "single")]);
    for (shards, mode) in modes {
        let (_srv, tls_port) = start_with(shards, "no", &["--recv-mode", mode]);
        let mut s = connect(tls_port, false).unwrap();
        // 1 MB value (bigger than a TLS record and the receive buffer) both ways.
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        s.write_all(&resp(&[b"SET", b"big", &big])).unwrap();
        assert_eq!(read_exactly(&mut s, 5), b"+OK\r\n");
        s.write_all(&resp(&[b"GET", b"big"])).unwrap();
        let head = b"$1000000\r\n";
        let got = read_exactly(&mut s, head.len() + big.len() + 2);
        assert_eq!(&got[..head.len()], head);
        assert!(got[head.len()..head.len() + big.len()] == big[..]);
        // 2000 pipelined commands in one write, keys on every shard.
        let mut req = Vec::new();
        let mut want = Vec::new();
        for i in 0..1000 {
            let (k, v) = (format!("key:{i}"), format!("value-{i}"));
            req.extend(resp(&[b"SET", k.as_bytes(), v.as_bytes()]));
            req.extend(resp(&[b"GET", k.as_bytes()]));
            want.extend_from_slice(b"+OK\r\n");
            want.extend(format!("${}\r\n{v}\r\n", v.len()).into_bytes());
        }
        s.write_all(&req).unwrap();
        assert!(read_exactly(&mut s, want.len()) == want);
    }
}

#[test]
fn client_certificates_when_required() {
    for shards in shard_counts() {
        let (_srv, tls_port) = start(shards, "yes");
        // Without a certificate the handshake is refused.
        let refused = connect(tls_port, false).and_then(|mut s| {
            s.write_all(b"PING\r\n")?;
            let mut b = [0u8; 7];
            s.read_exact(&mut b).map(|_| b)
        });
        assert!(
            refused.is_err(),
            "a client without a certificate was served"
        );
        let mut s = connect(tls_port, true).unwrap();
        s.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exactly(&mut s, 7), b"+PONG\r\n");
        drop(s);
        let (_srv, tls_port) = start(shards, "optional");
        for cert in [false, true] {
            let mut s = connect(tls_port, cert).unwrap();
            s.write_all(b"PING\r\n").unwrap();
            assert_eq!(read_exactly(&mut s, 7), b"+PONG\r\n", "cert={cert}");
        }
    }
}

#[test]
fn plaintext_client_on_the_tls_port_is_dropped() {
    let (srv, tls_port) = start(1, "no");
    let mut raw = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    // A TLS alert (content type 21) at most, then the close; never a Redis reply.
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    assert!(got.first().is_none_or(|b| *b == 0x15), "{got:?}");
    // The shard still serves TLS and plain clients.
    let mut s = connect(tls_port, false).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exactly(&mut s, 7), b"+PONG\r\n");
    assert!(common::ping(srv.port));
}

#[test]
fn a_stalled_handshake_does_not_stall_others() {
    let (srv, tls_port) = start(1, "no");
    // A client that sends half a ClientHello record and then nothing.
    let mut stalled = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    stalled
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .unwrap();
    // And one that connected and said nothing at all.
    let _silent = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    let t = Instant::now();
    for _ in 0..5 {
        let mut s = connect(tls_port, false).unwrap();
        s.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exactly(&mut s, 7), b"+PONG\r\n");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let mut c = srv.client();
    let clients = common::info(&mut c, "clients");
    // Both stalled connections are still held, as any idle client.
    let n: usize = clients["connected_clients"].parse().unwrap();
    assert!(n >= 3, "{clients:?}");
    drop(stalled);
}

#[test]
fn tls_port_alone_with_port_0() {
    let tls_port = free_port();
    let flags = tls_flags(tls_port, "no");
    let dir = std::env::temp_dir().join(format!("shardis-tls-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--port", "0", "--shards", "2", "--save", ""])
        .args(&flags)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_for(Duration::from_secs(10), || {
        connect(tls_port, false)
            .and_then(|mut s| {
                s.write_all(b"PING\r\n")?;
                let mut b = [0u8; 7];
                s.read_exact(&mut b).map(|_| b == *b"+PONG\r\n")
            })
            .unwrap_or(false)
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(up, "the TLS port did not answer");
}

/// Startup refuses what it cannot honour, with the reason.
#[test]
fn refused_settings_say_why() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--tls-key-file-pass", "secret"],
            "encrypted private keys are not supported",
        ),
        (
            &["--tls-replication", "yes"],
            "tls-replication needs tls-ca-cert-file",
        ),
        (&["--tls-protocols", "TLSv1.1"], "TLSv1.1 is not supported"),
        (
            &["--tls-ciphersuites", "TLS_AES_128_CCM_SHA256"],
            "not offered by rustls",
        ),
        (
            &["--tls-ciphers", "DHE-RSA-AES256-SHA"],
            "selects no TLSv1.2 cipher suite",
        ),
    ];
    for (args, why) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
            .args(["--port", &free_port().to_string()])
            .args(*args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // A TLS port with no certificate, or needing a CA for client certificates.
    let tls = free_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--port",
            &free_port().to_string(),
            "--tls-port",
            &tls,
            "--save",
            "",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tls-cert-file configured"));
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--port",
            &free_port().to_string(),
            "--tls-port",
            &tls,
            "--save",
            "",
        ])
        .args([
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls-ca-cert-file or tls-ca-cert-dir"));
}

fn repl_info(port: u16, field: &str) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c)
        })
        .unwrap_or_default()
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == field)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

fn get(port: u16, key: &str) -> Option<String> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("GET").arg(key).query(&mut c))
        .ok()
        .flatten()
}

/// `tls-replication yes`: a shardis replica reaches its master's TLS port (presenting its
/// client certificate, checking the master's against the CA), full sync then the live
/// stream; a stock redis-server replica does the same against shardis, and a shardis
/// replica follows a stock redis-server master over TLS. A replica whose CA does not
/// sign the master's certificate never links.
#[test]
fn replication_over_tls() {
    let replica_tls = |master_tls: u16, ca: &str| -> Vec<String> {
        [
            "--tls-replication",
            "yes",
            "--tls-ca-cert-file",
            ca,
            "--tls-client-cert-file",
            &path("client.crt"),
            "--tls-client-key-file",
            &path("client.key"),
            "--replicaof",
            "127.0.0.1",
            &master_tls.to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let (master, mtls) = start_with(2, "yes", &["--save", ""]);
    let mut mc = master.client();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut mc)
            .unwrap();
    }
    let flags = replica_tls(mtls, &path("ca.crt"));
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let replica = Server::start_with(1, &refs);
    assert!(
        wait_for(Duration::from_secs(15), || repl_info(
            replica.port,
            "master_link_status"
        ) == "up"),
        "the shardis replica did not link over TLS"
    );
    // The live stream after the full sync, in order, and the offsets agree.
    for i in 0..200 {
        let _: () = redis::cmd("INCR").arg("n").query(&mut mc).unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("new")
            .query(&mut mc)
            .unwrap();
    }
    assert!(wait_for(Duration::from_secs(10), || get(replica.port, "n")
        .as_deref()
        == Some("200")
        && get(replica.port, "k199").as_deref() == Some("new")));
    assert!(wait_for(Duration::from_secs(10), || {
        let m = repl_info(master.port, "master_repl_offset");
        !m.is_empty() && repl_info(replica.port, "slave_repl_offset") == m
    }));
    assert_eq!(get(replica.port, "k0").as_deref(), Some("new"));

    // A replica with another CA: the handshake fails, the link stays down.
    let other_ca = certs().join("other-ca.crt");
    if !other_ca.exists() {
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(certs().join("other-ca.key"))
            .arg("-out")
            .arg(&other_ca)
            .args(["-days", "2", "-subj", "/CN=another CA"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let flags = replica_tls(mtls, &other_ca.display().to_string());
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let stranger = Server::start_with(1, &refs);
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(repl_info(stranger.port, "master_link_status"), "up");
    assert_eq!(get(stranger.port, "k1"), None);

    if common::redis_server().is_none() {
        return;
    }
    // A stock redis-server replica of the shardis master's TLS port.
    let dir = std::env::temp_dir().join(format!("shardis-tls-stock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stock_port = free_port();
    let mut stock = Command::new("redis-server")
        .args([
            "--port",
            &stock_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&dir)
        .args([
            "--tls-cert-file",
            &path("client.crt"),
            "--tls-key-file",
            &path("client.key"),
        ])
        .args([
            "--tls-replication",
            "yes",
            "--tls-ca-cert-file",
            &path("ca.crt"),
        ])
        .args(["--replicaof", "127.0.0.1", &mtls.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let linked = wait_for(Duration::from_secs(15), || {
        get(stock_port, "n").as_deref() == Some("200")
    });
    let _ = redis::cmd("SET").arg("later").arg("x").query::<()>(&mut mc);
    let follows = wait_for(Duration::from_secs(10), || {
        get(stock_port, "later").as_deref() == Some("x")
    });
    let _ = stock.kill();
    let _ = stock.wait();
    assert!(
        linked && follows,
        "stock replica over TLS: {linked} {follows}"
    );

    // A shardis replica of a stock redis-server master's TLS port.
    let rm_tls = free_port();
    let mut rmaster = Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(&dir)
        .args(["--tls-port", &rm_tls.to_string()])
        .args([
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
        ])
        .args([
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "optional",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = wait_for(Duration::from_secs(10), || {
        tls_cli(rm_tls, &["PING"]).is_some_and(|r| r.contains("PONG"))
    });
    let _ = tls_cli(rm_tls, &["SET", "from", "redis"]);
    let flags = replica_tls(rm_tls, &path("ca.crt"));
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let follower = Server::start_with(2, &refs);
    let synced = wait_for(Duration::from_secs(15), || {
        get(follower.port, "from").as_deref() == Some("redis")
    });
    let _ = tls_cli(rm_tls, &["SET", "live", "1"]);
    let live = wait_for(Duration::from_secs(10), || {
        get(follower.port, "live").as_deref() == Some("1")
    });
    let _ = rmaster.kill();
    let _ = rmaster.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        up && synced && live,
        "replica of a stock TLS master: {up} {synced} {live}"
    );
}

/// Runs the openssl CLI in `dir`.
fn openssl_in(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl CLI is required for the TLS tests");
    assert!(st.success(), "openssl {args:?} failed");
}

/// Runs openssl in the certificates' directory (for certificates a test adds).
fn openssl(args: &[&str]) {
    openssl_in(certs(), args);
}

/// CONFIG SET of `tls-*` at run time, as Redis: a certificate and its key change together
/// (new connections get the new certificate, open ones keep working), a change that does
/// not build (a certificate without its key) is refused and changes nothing,
/// `tls-auth-clients` applies to the next connection, and `tls-port` says it needs a
/// restart.
#[test]
fn tls_settings_change_at_run_time() {
    if !certs().join("rotated.crt").exists() {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rotated.key",
            "-out",
            "rotated.csr",
            "-subj",
            "/CN=rotated",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "rotated.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "rotated.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
    }
    let (s, tls_port) = start(1, "yes");
    let mut c = s.client();
    let mut open = connect(tls_port, true).unwrap();
    let peer = |t: &Tls| t.conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    let first = peer(&open);
    let set = |c: &mut redis::Connection, args: &[&str]| {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET");
        for a in args {
            cmd.arg(*a);
        }
        cmd.query::<()>(c)
    };
    // A certificate without its key does not build: refused, nothing changes.
    let err = set(&mut c, &["tls-cert-file", &path("rotated.crt")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("Unable to update TLS configuration"),
        "{err}"
    );
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-cert-file")
        .query(&mut c)
        .unwrap();
    assert_eq!(shown[1], path("server.crt"));
    assert_eq!(peer(&connect(tls_port, true).unwrap()), first);
    // Both together: the next connection gets the new certificate.
    set(
        &mut c,
        &[
            "tls-cert-file",
            &path("rotated.crt"),
            "tls-key-file",
            &path("rotated.key"),
        ],
    )
    .unwrap();
    let rotated = CertificateDer::pem_file_iter(path("rotated.crt"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(peer(&connect(tls_port, true).unwrap()), rotated.as_ref());
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-key-file")
        .query(&mut c)
        .unwrap();
    assert_eq!(shown[1], path("rotated.key"));
    // The connection opened before keeps its session.
    open.write_all(&resp(&[b"PING"])).unwrap();
    assert_eq!(read_exactly(&mut open, 7), b"+PONG\r\n");
    // Client certificates: required now, then not.
    assert!(connect(tls_port, false)
        .and_then(|mut t| {
            t.write_all(&resp(&[b"PING"]))?;
            Ok(read_exactly(&mut t, 7))
        })
        .map_or(true, |r| r != b"+PONG\r\n"));
    set(&mut c, &["tls-auth-clients", "no"]).unwrap();
    let mut anon = connect(tls_port, false).unwrap();
    anon.write_all(&resp(&[b"PING"])).unwrap();
    assert_eq!(read_exactly(&mut anon, 7), b"+PONG\r\n");
    // A failed part of a CONFIG SET puts the TLS settings back.
    let err = set(&mut c, &["tls-auth-clients", "yes", "maxmemory", "lots"]).unwrap_err();
    assert!(err.to_string().contains("maxmemory"), "{err}");
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-auth-clients")
        .query(&mut c)
        .unwrap();
    assert_eq!(shown[1], "no");
    let mut anon = connect(tls_port, false).unwrap();
    anon.write_all(&resp(&[b"PING"])).unwrap();
    assert_eq!(read_exactly(&mut anon, 7), b"+PONG\r\n");
    let err = set(&mut c, &["tls-port", &free_port().to_string()]).unwrap_err();
    assert!(
        err.to_string().contains("cannot change at run time"),
        "{err}"
    );
}

/// `appendfsync always` over TLS: a pipeline of writes and a read comes back whole and in
/// order, and only once the group holding the writes is synced (a 200 ms slow disk).
#[test]
fn always_replies_over_tls_wait_for_the_sync() {
    let dir = std::env::temp_dir().join(format!("shardis-tls-aof-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let extra = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &d,
        "--enable-debug-command",
        "yes",
    ];
    let (s, tls_port) = start_with(2, "no", &extra);
    let _: () = redis::cmd("DEBUG")
        .arg("AOF-FSYNC-DELAY")
        .arg("200")
        .query(&mut s.client())
        .unwrap();
    let mut t = connect(tls_port, false).unwrap();
    let mut req = Vec::new();
    for i in 0..10 {
        req.extend(resp(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
    }
    req.extend(resp(&[b"GET", b"k9"]));
    let start = std::time::Instant::now();
    t.write_all(&req).unwrap();
    t.flush().unwrap();
    let want = [&b"+OK\r\n".repeat(10)[..], b"$1\r\nv\r\n"].concat();
    assert_eq!(read_exactly(&mut t, want.len()), want);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(180), "replies after {took:?}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
