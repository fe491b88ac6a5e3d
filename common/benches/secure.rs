//! Micro-benchmark: a small request/reply frame over `SecureStream` on TCP
//! loopback against the same over plain TCP loopback, printing the ratio.
//!
//! Also a unix socket (what the netns lab uses), and with `JOB=1` the echo
//! side spawns `/bin/true` per request, like a `host.run("true")` job, so
//! the transport's share of a real job round trip shows.
//!
//! `cargo bench -p lnst-common --bench secure` (ROUNDS=N to change the
//! count). Both ends run in one process on a current-thread runtime, so
//! the figure is the cost of the transport, not of waking another core.

use std::time::{Duration, Instant};

use lnst_common::codec;
use lnst_common::secure::{client_connect, server_accept, ClientAuth, KeyPair, ServerAuth};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) {
    let mut hdr = [0u8; codec::HEADER_LEN];
    s.read_exact(&mut hdr).await.expect("header");
    let len = codec::decode_header(hdr).expect("length");
    buf.resize(len, 0);
    s.read_exact(buf).await.expect("body");
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, rounds: usize, job: bool) {
    let mut buf = Vec::new();
    for _ in 0..rounds {
        read_frame(&mut s, &mut buf).await;
        if job {
            let st = tokio::process::Command::new("true")
                .status()
                .await
                .expect("spawn true");
            assert!(st.success());
        }
        let reply: (u64, String) = codec::decode_body(&buf).expect("decode");
        let out = codec::encode_frame(&reply).expect("encode");
        s.write_all(&out).await.expect("write");
        s.flush().await.expect("flush");
    }
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, rounds: usize) -> Vec<Duration> {
    let mut buf = Vec::new();
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t0 = Instant::now();
        let req = codec::encode_frame(&(i as u64, "run true".to_string())).expect("encode");
        s.write_all(&req).await.expect("write");
        s.flush().await.expect("flush");
        read_frame(&mut s, &mut buf).await;
        let (n, _): (u64, String) = codec::decode_body(&buf).expect("decode");
        assert_eq!(n, i as u64);
        times.push(t0.elapsed());
    }
    times
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Unix,
    Secure,
}

async fn run_unix(rounds: usize, job: bool) -> Vec<Duration> {
    let path = std::env::temp_dir().join(format!("lnst-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = tokio::net::UnixListener::bind(&path).expect("bind unix");
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        echo(s, rounds, job).await;
    });
    let c = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect");
    let times = drive(c, rounds).await;
    server.await.expect("server");
    let _ = std::fs::remove_file(&path);
    times
}

async fn run(kind: Kind, rounds: usize, job: bool) -> Vec<Duration> {
    if kind == Kind::Unix {
        return run_unix(rounds, job).await;
    }
    let secure = kind == Kind::Secure;
    let ctl = KeyPair::generate().expect("key");
    let agent = KeyPair::generate().expect("key");
    let (cauth, sauth) = if secure {
        (
            ClientAuth::Noise {
                ours: ctl.clone(),
                pinned: Some(*agent.public()),
            },
            ServerAuth::Noise {
                ours: agent,
                accepted: vec![*ctl.public()],
                config: "agent.toml".into(),
            },
        )
    } else {
        (ClientAuth::Insecure, ServerAuth::Insecure)
    };
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let t = Duration::from_secs(5);
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let (s, _) = server_accept(s, &sauth, t).await.expect("server handshake");
        echo(s, rounds, job).await;
    });
    let c = TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let c = client_connect(c, &cauth, "bench", t)
        .await
        .expect("client handshake");
    let times = drive(c, rounds).await;
    server.await.expect("server");
    times
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let job = std::env::var_os("JOB").is_some_and(|v| v != "0");
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if job { 1500 } else { 20_000 });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let kinds = [Kind::Plain, Kind::Unix, Kind::Secure];
    // Warm up every path, then alternate to spread noise evenly.
    for k in kinds {
        rt.block_on(run(k, rounds / 10 + 1, job));
    }
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, k) in kinds.into_iter().enumerate() {
            times[i].extend(rt.block_on(run(k, rounds / 3, job)));
        }
    }
    let [p, u, s] = times.map(median);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let what = if job {
        "request, spawn `true`, reply"
    } else {
        "request/reply of a small frame"
    };
    println!("{what}: {} rounds each, median", rounds / 3 * 3);
    println!("plain TCP loopback:  {:>9.1} µs", us(p));
    println!("unix socket:         {:>9.1} µs", us(u));
    println!("Noise over TCP:      {:>9.1} µs", us(s));
    for (name, base) in [("plain TCP", p), ("unix socket", u)] {
        let r = s.as_secs_f64() / base.as_secs_f64();
        println!("ratio secure/{name}: {r:.3} ({:+.1}%)", (r - 1.0) * 100.0);
    }
}
