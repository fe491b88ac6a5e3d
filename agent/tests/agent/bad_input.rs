//! Bad input: each gets its error and the agent keeps serving (a normal
//! session afterwards works).

use std::time::Duration;

use lnst_common::handshake::{Preamble, PREAMBLE_LEN, PROTOCOL_VERSION};
use lnst_common::{Request, Response, ToAgent, ToController};
use lnst_ctl::client::{AgentClient, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::*;

async fn normal_session_works(a: &Agent) {
    let c = a.client().await;
    assert!(matches!(
        c.request(Request::Ping).await.unwrap(),
        Response::Pong
    ));
    let s = run(&c, lnst_common::job::JobSpec::shell("echo ok")).await;
    assert_eq!(s.stdout, b"ok\n");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes() {
    let a = Agent::start();
    let mut r = Raw::connect(&a).await;
    r.0.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(r.closed_within(Duration::from_secs(3)).await);
    assert!(a.wait_log("not an lnst endpoint"), "{}", a.log_text());
    normal_session_works(&a).await;

    // Garbage after a good preamble and Hello: a malformed frame.
    let mut r = Raw::session(&a, "garbage test").await;
    r.0.write_all(&[0, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb])
        .await
        .unwrap();
    match r.recv().await {
        Some(ToController::Refused { reason }) => {
            assert!(reason.contains("malformed"), "{reason}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(r.closed_within(Duration::from_secs(3)).await);
    normal_session_works(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_prefix() {
    let a = Agent::start();
    // As the first frame, instead of Hello.
    let mut r = Raw::connect(&a).await;
    r.0.write_all(&Preamble::ours().encode()).await.unwrap();
    r.0.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let mut p = [0u8; PREAMBLE_LEN];
    r.0.read_exact(&mut p).await.unwrap();
    match r.recv().await {
        Some(ToController::Refused { reason }) => {
            assert!(reason.contains("exceeds the limit"), "{reason}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // Mid-session.
    let mut r = Raw::session(&a, "huge test").await;
    r.0.write_all(&[0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    match r.recv().await {
        Some(ToController::Refused { reason }) => {
            assert!(reason.contains("exceeds the limit"), "{reason}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(r.closed_within(Duration::from_secs(3)).await);
    normal_session_works(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame() {
    let a = Agent::start();
    let mut r = Raw::session(&a, "truncated test").await;
    let f = lnst_common::codec::encode_frame(&ToAgent::Request {
        id: 1,
        req: Request::Ping,
    })
    .unwrap();
    r.0.write_all(&f[..f.len() - 1]).await.unwrap();
    r.0.shutdown().await.unwrap();
    assert!(r.closed_within(Duration::from_secs(3)).await);
    assert!(a.wait_log("in the middle of a frame"), "{}", a.log_text());
    normal_session_works(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version() {
    let a = Agent::start();
    let mut r = Raw::connect(&a).await;
    r.0.write_all(&Preamble { version: 99 }.encode())
        .await
        .unwrap();
    let mut p = [0u8; PREAMBLE_LEN];
    r.0.read_exact(&mut p).await.unwrap();
    // The controller side can tell which version the agent speaks...
    let e = Preamble::check(&Preamble { version: 99 }.encode()).unwrap_err();
    assert!(e.to_string().contains("99"));
    assert_eq!(Preamble::decode(&p).unwrap().version, PROTOCOL_VERSION);
    // ...and the agent logs both and closes.
    assert!(r.closed_within(Duration::from_secs(3)).await);
    assert!(
        a.wait_log(&format!(
            "peer speaks version 99, this side speaks version {PROTOCOL_VERSION}"
        )),
        "{}",
        a.log_text()
    );
    normal_session_works(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_controller_is_told_who_and_since_when() {
    let a = Agent::start();
    let first = Raw::session(&a, "alice@lab pid 4242").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    match AgentClient::connect("h1", &a.addr()).await {
        Err(ClientError::Refused { reason, .. }) => {
            assert!(reason.contains("alice@lab pid 4242"), "{reason}");
            assert!(reason.contains("unix socket (pid"), "{reason}");
            assert!(reason.contains(" since 20"), "{reason}");
            assert!(reason.contains("Z (1 s ago)"), "{reason}");
        }
        Err(e) => panic!("expected Refused, got {e}"),
        Ok(_) => panic!("second controller was accepted"),
    }
    drop(first);
    // The holder's session ends when its connection closes.
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(c) = AgentClient::connect("h1", &a.addr()).await {
            c.close().await.unwrap();
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "agent not free after the holder left");
    normal_session_works(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_before_hello_is_refused() {
    let a = Agent::start();
    let mut r = Raw::connect(&a).await;
    r.0.write_all(&Preamble::ours().encode()).await.unwrap();
    let mut p = [0u8; PREAMBLE_LEN];
    r.0.read_exact(&mut p).await.unwrap();
    r.send(&ToAgent::Request {
        id: 1,
        req: Request::Ping,
    })
    .await;
    match r.recv().await {
        Some(ToController::Refused { reason }) => {
            assert!(reason.contains("expected Hello"), "{reason}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    normal_session_works(&a).await;
}
