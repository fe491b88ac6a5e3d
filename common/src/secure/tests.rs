//! End-to-end tests of the transport: both ends in one process, over
//! `tokio::io::duplex` and over real TCP on 127.0.0.1 (port 0).

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::codec;

const T: Duration = Duration::from_secs(5);
/// A configuration path no agent uses by default, to see it named.
const CONFIG: &str = "/tmp/x/agent.toml";

struct Keys {
    ctl: KeyPair,
    agent: KeyPair,
}

fn keys() -> Keys {
    Keys {
        ctl: KeyPair::generate().unwrap(),
        agent: KeyPair::generate().unwrap(),
    }
}

fn server_auth(k: &Keys) -> ServerAuth {
    ServerAuth::Noise {
        ours: k.agent.clone(),
        accepted: vec![*k.ctl.public()],
        config: CONFIG.into(),
    }
}

fn client_auth(k: &Keys) -> ClientAuth {
    ClientAuth::Noise {
        ours: k.ctl.clone(),
        pinned: Some(*k.agent.public()),
    }
}

/// A pseudo-random byte pattern, so misplaced bytes are noticed.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs both handshakes concurrently over TCP on 127.0.0.1.
async fn tcp_pair(
    cauth: &ClientAuth,
    sauth: &ServerAuth,
) -> (
    Result<Transport<TcpStream>, SecureError>,
    Result<(Transport<TcpStream>, Option<PublicKey>), SecureError>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sauth = sauth.clone();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        server_accept(s, &sauth, T).await
    });
    let c = TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let client = client_connect(c, cauth, "host-a", T).await;
    (client, server.await.unwrap())
}

/// Sends `data` from `a` to `b` while `b` sends `back` to `a`, concurrently,
/// and checks both arrive exactly.
async fn exchange<A, B>(a: &mut A, b: &mut B, data: &[u8], back: &[u8])
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let a_send = async {
        aw.write_all(data).await.unwrap();
        aw.flush().await.unwrap();
    };
    let b_send = async {
        bw.write_all(back).await.unwrap();
        bw.flush().await.unwrap();
    };
    let a_recv = async {
        let mut got = vec![0u8; back.len()];
        ar.read_exact(&mut got).await.unwrap();
        got
    };
    let b_recv = async {
        let mut got = vec![0u8; data.len()];
        br.read_exact(&mut got).await.unwrap();
        got
    };
    let (_, _, at_a, at_b) = tokio::join!(a_send, b_send, a_recv, b_recv);
    assert!(at_b == data, "data corrupted a→b ({} bytes)", data.len());
    assert!(at_a == back, "data corrupted b→a ({} bytes)", back.len());
}

#[tokio::test]
async fn duplex_good_keys_carry_small_and_huge_writes() {
    let k = keys();
    let (c, s) = tokio::io::duplex(8 * 1024);
    let agent = k.agent.clone();
    let accepted = vec![*k.ctl.public()];
    let server =
        tokio::spawn(async move { server_handshake(s, &agent, &accepted, CONFIG, T).await });
    let mut c = client_handshake(c, &k.ctl, k.agent.public(), "h", T)
        .await
        .unwrap();
    let (mut s, peer) = server.await.unwrap().unwrap();
    assert_eq!(peer, *k.ctl.public());
    exchange(&mut c, &mut s, b"ping", b"pong").await;
    // Record boundaries: exactly one, one over, many records.
    for (i, len) in [stream::MAX_PLAIN, stream::MAX_PLAIN + 1, 70_000, 3 << 20]
        .into_iter()
        .enumerate()
    {
        let a = pattern(len, i as u32);
        let b = pattern(len / 2 + 1, 100 + i as u32);
        exchange(&mut c, &mut s, &a, &b).await;
    }
}

#[tokio::test]
async fn tcp_good_keys_carry_frames_and_megabytes() {
    let k = keys();
    let (c, s) = tcp_pair(&client_auth(&k), &server_auth(&k)).await;
    let mut c = c.unwrap();
    let (mut s, peer) = s.unwrap();
    assert!(c.is_secure() && s.is_secure());
    assert_eq!(peer, Some(*k.ctl.public()));

    // The frame codec runs unchanged over the stream.
    let msg = (42u32, "hello over noise".to_string(), vec![7u8; 100_000]);
    let frame = codec::encode_frame(&msg).unwrap();
    c.write_all(&frame).await.unwrap();
    c.flush().await.unwrap();
    let mut hdr = [0u8; codec::HEADER_LEN];
    s.read_exact(&mut hdr).await.unwrap();
    let mut body = vec![0u8; codec::decode_header(hdr).unwrap()];
    s.read_exact(&mut body).await.unwrap();
    let back: (u32, String, Vec<u8>) = codec::decode_body(&body).unwrap();
    assert_eq!(back, msg);

    let big = pattern(5 << 20, 9);
    let big2 = pattern(2 << 20, 10);
    exchange(&mut c, &mut s, &big, &big2).await;

    // A clean close reads as end of stream.
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test]
async fn unknown_controller_is_refused_before_any_request() {
    let k = keys();
    let stranger = KeyPair::generate().unwrap();
    let cauth = ClientAuth::Noise {
        ours: stranger.clone(),
        pinned: Some(*k.agent.public()),
    };
    let (c, s) = tcp_pair(&cauth, &server_auth(&k)).await;
    let ce = c.unwrap_err();
    let se = s.unwrap_err();
    let fp = stranger.public().fingerprint().to_string();
    let cmsg = ce.to_string();
    assert!(
        matches!(ce, SecureError::Refused { .. })
            && cmsg.contains("agent host-a refused this controller's key")
            && cmsg.contains(&fp)
            && cmsg.contains("accepted_keys"),
        "{cmsg}"
    );
    let smsg = se.to_string();
    assert!(
        matches!(se, SecureError::UnknownController { .. })
            && smsg.contains(&fp)
            && smsg.contains(&format!("add it to accepted_keys in {CONFIG} ")),
        "{smsg}"
    );
}

#[tokio::test]
async fn refused_controller_cannot_smuggle_a_request() {
    // A hostile controller that pipelines application data right after msg3
    // without waiting for the verdict: the agent still yields no stream.
    let k = keys();
    let stranger = KeyPair::generate().unwrap();
    let (c, s) = tokio::io::duplex(64 * 1024);
    let agent = k.agent.clone();
    let accepted = vec![*k.ctl.public()];
    let server =
        tokio::spawn(async move { server_handshake(s, &agent, &accepted, CONFIG, T).await });
    let r = client_handshake(c, &stranger, k.agent.public(), "h", T).await;
    assert!(matches!(r, Err(SecureError::Refused { .. })), "{r:?}");
    assert!(matches!(
        server.await.unwrap(),
        Err(SecureError::UnknownController { .. })
    ));
}

#[tokio::test]
async fn agent_with_no_accepted_keys_says_so() {
    let k = keys();
    let sauth = ServerAuth::Noise {
        ours: k.agent.clone(),
        accepted: vec![],
        config: CONFIG.into(),
    };
    let (c, s) = tcp_pair(&client_auth(&k), &sauth).await;
    let cmsg = c.unwrap_err().to_string();
    assert!(cmsg.contains("accepts no controller keys"), "{cmsg}");
    assert!(
        cmsg.contains(&format!("accepted_keys in {CONFIG} ")),
        "{cmsg}"
    );
    let se = s.unwrap_err();
    assert!(matches!(se, SecureError::NoAcceptedKeys { .. }), "{se}");
    assert!(
        se.to_string()
            .ends_with(&format!("accepted_keys in {CONFIG}")),
        "{se}"
    );
}

#[tokio::test]
async fn pin_mismatch_shows_both_fingerprints() {
    let k = keys();
    let other = KeyPair::generate().unwrap();
    let cauth = ClientAuth::Noise {
        ours: k.ctl.clone(),
        pinned: Some(*other.public()),
    };
    let (c, s) = tcp_pair(&cauth, &server_auth(&k)).await;
    let ce = c.unwrap_err();
    let msg = ce.to_string();
    assert!(matches!(ce, SecureError::PinMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&k.agent.public().fingerprint().to_string())
            && msg.contains(&other.public().fingerprint().to_string())
            && msg.contains("agent host-a presented key")
            && msg.contains("man in the middle"),
        "{msg}"
    );
    // The agent sees the controller walk away and did not yield a stream.
    let se = s.unwrap_err();
    assert!(matches!(se, SecureError::ClosedByController { .. }), "{se}");
}

#[tokio::test]
async fn missing_pin_shows_the_agents_key() {
    let k = keys();
    let cauth = ClientAuth::Noise {
        ours: k.ctl.clone(),
        pinned: None,
    };
    let (c, s) = tcp_pair(&cauth, &server_auth(&k)).await;
    let msg = c.unwrap_err().to_string();
    assert!(msg.contains(&k.agent.public().to_text()), "{msg}");
    assert!(s.is_err());
}

#[tokio::test]
async fn insecure_on_one_side_only_is_explained_on_both() {
    let k = keys();
    // Controller --insecure, agent with keys.
    let (c, s) = tcp_pair(&ClientAuth::Insecure, &server_auth(&k)).await;
    let (ce, se) = (c.unwrap_err(), s.unwrap_err());
    assert!(matches!(ce, SecureError::AgentRequiresAuth { .. }), "{ce}");
    assert!(ce
        .to_string()
        .contains("agent host-a requires authentication"));
    assert!(matches!(se, SecureError::ControllerInsecure), "{se}");
    assert!(se
        .to_string()
        .contains("controller connected without authentication but this agent was not started with --insecure"));

    // Agent --insecure, controller with keys.
    let (c, s) = tcp_pair(&client_auth(&k), &ServerAuth::Insecure).await;
    let (ce, se) = (c.unwrap_err(), s.unwrap_err());
    assert!(matches!(ce, SecureError::AgentInsecure { .. }), "{ce}");
    assert!(ce.to_string().contains("--insecure"));
    assert!(matches!(se, SecureError::ControllerRequiresAuth), "{se}");

    // Both --insecure: plain bytes flow.
    let (c, s) = tcp_pair(&ClientAuth::Insecure, &ServerAuth::Insecure).await;
    let mut c = c.unwrap();
    let (mut s, peer) = s.unwrap();
    assert!(!c.is_secure() && peer.is_none());
    exchange(&mut c, &mut s, b"plain", b"text").await;
}

/// Runs `server_accept` on one raw connection whose client side is driven
/// by the test.
async fn raw_server(k: &Keys) -> (TcpStream, tokio::task::JoinHandle<Result<(), SecureError>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sauth = server_auth(k);
    let h = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        server_accept(s, &sauth, Duration::from_secs(2))
            .await
            .map(|_| ())
    });
    (TcpStream::connect(addr).await.unwrap(), h)
}

#[tokio::test]
async fn garbage_before_and_during_the_handshake_is_an_error() {
    let k = keys();

    // An HTTP client.
    let (mut c, h) = raw_server(&k).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let e = h.await.unwrap().unwrap_err();
    assert!(matches!(e, SecureError::NotLnst(_)), "{e}");

    // A right hello, then an oversized handshake message.
    let (mut c, h) = raw_server(&k).await;
    c.write_all(&hello::encode(hello::Mode::Noise))
        .await
        .unwrap();
    c.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    let e = h.await.unwrap().unwrap_err();
    assert!(matches!(e, SecureError::Protocol(_)), "{e}");

    // A right hello, a plausible msg1, then a garbage msg3.
    let (mut c, h) = raw_server(&k).await;
    c.write_all(&hello::encode(hello::Mode::Noise))
        .await
        .unwrap();
    let mut m = vec![0, 32];
    m.extend(pattern(32, 1));
    c.write_all(&m).await.unwrap();
    let mut m = vec![0, 64];
    m.extend(pattern(64, 2));
    c.write_all(&m).await.unwrap();
    let e = h.await.unwrap().unwrap_err();
    assert!(matches!(e, SecureError::Noise(_)), "{e}");

    // Random bytes of every small length, from both directions' view.
    for len in [0usize, 1, 5, 6, 7, 40, 200] {
        let (mut c, h) = raw_server(&k).await;
        let mut junk = hello::encode(hello::Mode::Noise)[..len.min(6)].to_vec();
        junk.extend(pattern(len.saturating_sub(6), len as u32));
        c.write_all(&junk).await.unwrap();
        c.shutdown().await.unwrap();
        assert!(h.await.unwrap().is_err(), "{len} junk bytes accepted");
    }

    // The controller side facing a garbage "agent".
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let junk_agent = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
        let mut sink = [0u8; 256];
        let _ = s.read(&mut sink).await;
    });
    let c = TcpStream::connect(addr).await.unwrap();
    let e = client_connect(c, &client_auth(&k), "h", T)
        .await
        .unwrap_err();
    assert!(matches!(e, SecureError::NotLnst(_)), "{e}");
    junk_agent.await.unwrap();
}

#[tokio::test]
async fn stalled_handshake_times_out_while_others_are_served() {
    let k = keys();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sauth = std::sync::Arc::new(server_auth(&k));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The accept loop an agent runs: one task per connection.
    let acceptor = tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let (sauth, tx) = (sauth.clone(), tx.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                let r = server_accept(s, &sauth, Duration::from_millis(800)).await;
                let _ = tx.send((r.map(|_| ()), t0.elapsed()));
            });
        }
    });
    // One peer connects and says nothing; another sends half a hello.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"lns").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A good controller meanwhile gets through at once.
    let t0 = Instant::now();
    let c = TcpStream::connect(addr).await.unwrap();
    let mut c = client_connect(c, &client_auth(&k), "h", T).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    c.write_all(b"x").await.unwrap();
    let (ok, _) = rx.recv().await.unwrap();
    assert!(ok.is_ok(), "{ok:?}");
    // Then both stalled ones time out.
    for _ in 0..2 {
        let (r, took) = rx.recv().await.unwrap();
        assert!(matches!(r, Err(SecureError::Timeout(_))), "{r:?}");
        assert!(took >= Duration::from_millis(790) && took < Duration::from_secs(3));
    }
    acceptor.abort();
}

/// Forwards bytes between two sockets, flipping one bit of the
/// controller→agent stream at byte `flip_at`; also reports whether the
/// plaintext `needle` ever crossed in clear.
async fn flipping_proxy(
    flip_at: usize,
    needle: &'static [u8],
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<bool>,
    TcpListener,
) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (c, _) = front.accept().await.unwrap();
        let s = TcpStream::connect(up_addr).await.unwrap();
        let (mut cr, mut cw) = c.into_split();
        let (mut sr, mut sw) = s.into_split();
        let down = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let start = seen.len();
            seen.extend_from_slice(&buf[..n]);
            if (start..start + n).contains(&flip_at) {
                buf[flip_at - start] ^= 0x01;
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        down.abort();
        seen.windows(needle.len()).any(|w| w == needle)
    });
    (addr, h, upstream)
}

#[tokio::test]
async fn tampered_record_is_an_error_and_traffic_is_not_clear() {
    let k = keys();
    // Controller→agent handshake bytes: hello 6 + msg1 2+32 + msg3 2+64.
    let hs_len = 6 + 34 + 66;
    for (flip_at, expect_tamper) in [(hs_len + 2 + 5, true), (usize::MAX, false)] {
        const NEEDLE: &[u8] = b"a secret request body";
        let (addr, proxy, upstream) = flipping_proxy(flip_at, NEEDLE).await;
        let sauth = server_auth(&k);
        let server = tokio::spawn(async move {
            let (s, _) = upstream.accept().await.unwrap();
            let (mut t, _) = server_accept(s, &sauth, T).await.unwrap();
            let mut got = vec![0u8; NEEDLE.len()];
            let first = t.read_exact(&mut got).await.map(|_| got);
            // After a bad record the stream stays broken (no waiting for
            // more data); after a good one there is nothing more to read.
            let second = match first {
                Err(_) => Some(t.read(&mut [0u8; 8]).await),
                Ok(_) => None,
            };
            (first, second)
        });
        let c = TcpStream::connect(addr).await.unwrap();
        let mut c = client_connect(c, &client_auth(&k), "h", T).await.unwrap();
        c.write_all(NEEDLE).await.unwrap();
        c.flush().await.unwrap();
        let (first, second) = server.await.unwrap();
        if expect_tamper {
            let e = first.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("tampered"), "{e}");
            assert!(
                matches!(second, Some(Err(_))),
                "a broken stream went on reading"
            );
        } else {
            assert_eq!(first.unwrap(), NEEDLE);
        }
        drop(c);
        assert!(!proxy.await.unwrap(), "plaintext seen on the wire");
    }
}

#[tokio::test]
async fn truncated_record_is_an_error_not_eof() {
    let k = keys();
    let (c, s) = tokio::io::duplex(64 * 1024);
    // A controller whose last record is cut short by a proxy is the same
    // as one whose socket closes mid-record: emulate with a raw duplex.
    let agent = k.agent.clone();
    let accepted = vec![*k.ctl.public()];
    let server = tokio::spawn(async move {
        let (mut t, _) = server_handshake(s, &agent, &accepted, CONFIG, T)
            .await
            .unwrap();
        let mut v = Vec::new();
        t.read_to_end(&mut v).await
    });
    let mut c = client_handshake(c, &k.ctl, k.agent.public(), "h", T)
        .await
        .unwrap();
    // Write a valid record header announcing 100 bytes, send only 20, close.
    c.flush().await.unwrap();
    let raw: &mut tokio::io::DuplexStream = unsafe_inner(&mut c);
    raw.write_all(&[0, 100]).await.unwrap();
    raw.write_all(&[0u8; 20]).await.unwrap();
    raw.shutdown().await.unwrap();
    let e = server.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
}

/// The raw stream under a `SecureStream`, to inject bytes in tests.
fn unsafe_inner<S>(s: &mut SecureStream<S>) -> &mut S {
    s.inner_mut_for_tests()
}
