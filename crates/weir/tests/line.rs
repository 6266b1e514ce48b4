//! The TCP line protocol over real sockets: chat, pub/sub, and bad input that gets an error
//! line rather than a disconnect.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::{start, LineClient as Client, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::config::ServeConfig;

#[tokio::test]
async fn chat_with_nicknames_rooms_presence_and_history() {
    let server = start(ServeConfig::defaults()).await;
    let mut ada = Client::connect(&server.line).await;
    let mut bob = Client::connect(&server.line).await;

    assert_eq!(
        ada.ask("JOIN lobby").await,
        "-ERR set a nickname first: NICK <name>"
    );
    assert_eq!(ada.ask("NICK ada").await, "+OK you are ada");
    assert_eq!(
        bob.ask("NICK ADA").await,
        "-ERR nickname ADA is taken",
        "nicknames are unique, case-insensitively"
    );
    assert_eq!(bob.ask("NICK bob").await, "+OK you are bob");

    assert_eq!(ada.ask("JOIN lobby").await, "+OK joined lobby (1 here)");
    assert_eq!(ada.line().await, "JOIN lobby ada");
    ada.send("SAY lobby hello, anyone?").await;
    assert_eq!(ada.line().await, "MSG lobby ada hello, anyone?");

    // Bob joins and gets the recent history, then his own join.
    bob.send("JOIN lobby").await;
    assert_eq!(bob.expect("+OK").await, "+OK joined lobby (2 here)");
    bob.expect("MSG lobby ada hello, anyone?").await;
    assert_eq!(ada.line().await, "JOIN lobby bob", "joins are announced");
    assert_eq!(ada.ask("WHO lobby").await, "+OK lobby: ada bob");

    bob.send("SAY lobby hi ada").await;
    assert_eq!(ada.line().await, "MSG lobby bob hi ada");

    // Ada's second connection does not announce her again: presence is per user.
    let mut ada_phone = Client::connect(&server.line).await;
    assert_eq!(
        ada_phone.ask("NICK ada").await,
        "-ERR nickname ada is taken"
    );
}

#[tokio::test]
async fn parting_and_disconnecting_are_announced() {
    let server = start(ServeConfig::defaults()).await;
    let mut ada = Client::connect(&server.line).await;
    let mut bob = Client::connect(&server.line).await;
    ada.ask("NICK ada").await;
    bob.ask("NICK bob").await;
    ada.send("JOIN lobby").await;
    ada.expect("JOIN lobby ada").await;
    bob.send("JOIN lobby").await;
    ada.expect("JOIN lobby bob").await;
    bob.send("PART lobby").await;
    assert_eq!(ada.line().await, "PART lobby bob");
    bob.send("JOIN lobby").await;
    ada.expect("JOIN lobby bob").await;
    drop(bob);
    assert_eq!(
        ada.line().await,
        "PART lobby bob",
        "a dropped connection parts its rooms"
    );
    assert_eq!(ada.ask("WHO lobby").await, "+OK lobby: ada");
}

#[tokio::test]
async fn pub_sub_from_an_offset_and_across_transports() {
    let server = start(ServeConfig::defaults()).await;
    let mut client = Client::connect(&server.line).await;
    assert_eq!(client.ask("PUB news first").await, "+OK news offset 0");
    assert_eq!(client.ask("PUB news second").await, "+OK news offset 1");
    assert_eq!(client.ask("SUB news 1").await, "+OK subscribed to news");
    assert_eq!(client.event().await, "EVENT news 1 second");
    // Published over HTTP, received on the line protocol.
    let mut http = TcpStream::connect(&server.http).await.unwrap();
    http.write_all(
        b"POST /v1/topics/news HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nfrom\nhttp!",
    )
    .await
    .unwrap();
    assert_eq!(
        client.event().await,
        "EVENT news 2 from\\nhttp!",
        "line breaks are escaped"
    );
    assert_eq!(
        client.ask("SUB news").await,
        "-ERR already subscribed to news"
    );
    assert_eq!(client.ask("UNSUB news").await, "+OK unsubscribed from news");
    assert_eq!(
        client.ask("SUB orders.>").await,
        "+OK subscribed to orders.>"
    );
    client.ask("PUB orders.eu.new 42").await;
    assert_eq!(client.event().await, "EVENT orders.eu.new 0 42");
}

/// Events carry positions (`EPOCH-OFFSET`); `SUB` with a position from another epoch (the
/// server restarted, or this is another node) is told with `RESET`, then replays what this
/// epoch retains.
#[tokio::test]
async fn sub_from_a_position_of_another_epoch_gets_a_reset_line() {
    let before = start(ServeConfig::defaults()).await;
    let mut old = Client::connect(&before.line).await;
    assert_eq!(old.ask("SUB news").await, "+OK subscribed to news");
    old.ask("PUB news old").await;
    let seen = old.line().await;
    let position = seen.split(' ').nth(2).unwrap().to_owned();
    let (old_epoch, _) = position.split_once('-').unwrap();
    drop((old, before));

    let server = start(ServeConfig::defaults()).await;
    let mut client = Client::connect(&server.line).await;
    client.ask("PUB news a").await;
    client.ask("PUB news b").await;
    assert_eq!(
        client.ask(&format!("SUB news {old_epoch}-1")).await,
        "+OK subscribed to news"
    );
    let reset = client.line().await;
    let words: Vec<&str> = reset.split(' ').collect();
    assert_eq!(&words[..3], ["RESET", "news", old_epoch], "{reset}");
    let (epoch, from) = words[3].split_once('-').unwrap();
    assert_ne!(epoch, old_epoch);
    assert_eq!(from, "0");
    assert_eq!(client.line().await, format!("EVENT news {epoch}-0 a"));
    assert_eq!(client.line().await, format!("EVENT news {epoch}-1 b"));

    // The same epoch resumes exactly.
    let mut again = Client::connect(&server.line).await;
    again.ask(&format!("SUB news {epoch}-1")).await;
    assert_eq!(again.line().await, format!("EVENT news {epoch}-1 b"));
}

#[tokio::test]
async fn bad_lines_get_an_error_and_the_connection_goes_on() {
    let server = start(ServeConfig::defaults()).await;
    let mut client = Client::connect(&server.line).await;
    assert_eq!(
        client.ask("FROBNICATE now").await,
        "-ERR unknown command \"FROBNICATE\"; try HELP"
    );
    client.send_raw(b"NICK \xff\xfe\r\n").await;
    assert_eq!(
        client.line().await,
        "-ERR line is not UTF-8; it was discarded"
    );
    let long = format!("SAY lobby {}", "x".repeat(10_000));
    assert_eq!(
        client.ask(&long).await,
        "-ERR line too long (limit 4096 bytes); it was discarded"
    );
    assert_eq!(
        client.ask("SAY lobby hi").await,
        "-ERR join lobby before saying something there"
    );
    assert_eq!(
        client.ask("JOIN a.b").await,
        "-ERR set a nickname first: NICK <name>"
    );
    client.ask("NICK eve").await;
    assert!(client
        .ask("JOIN a.b")
        .await
        .starts_with("-ERR room \"a.b\""));
    assert!(client
        .ask("PUB bad..topic x")
        .await
        .starts_with("-ERR topic \"bad..topic\" has an empty segment"));
    assert!(client.ask("HELP").await.starts_with("+OK commands: NICK"));
    assert_eq!(client.ask("QUIT").await, "+OK bye");
}

#[tokio::test]
async fn a_flooding_client_is_slowed_then_disconnected() {
    let server = start(ServeConfig::defaults()).await;
    let mut client = Client::connect(&server.line).await;
    // Pub/sub commands are machine traffic: 100 PUBs at once all pass.
    let publishes: String = (0..100).map(|i| format!("PUB flood {i}\r\n")).collect();
    client.send_raw(publishes.as_bytes()).await;
    for i in 0..100 {
        assert_eq!(client.line().await, format!("+OK flood offset {i}"));
    }
    // 60 chat lines at once: the burst of 20 passes, the rest are refused, and after 20
    // refusals in a row the server hangs up.
    let burst: String = (0..60).map(|_| "WHO flood\r\n").collect();
    client.send_raw(burst.as_bytes()).await;
    let mut accepted = 0;
    let mut refused = 0;
    loop {
        match tokio::time::timeout(DEADLINE, client.lines.next_line())
            .await
            .unwrap()
            .unwrap()
        {
            Some(line) if line.starts_with("+OK flood") => accepted += 1,
            Some(line) if line.starts_with("-ERR flood") => refused += 1,
            Some(line) if line == "-ERR disconnected for flooding" => break,
            Some(line) => panic!("unexpected {line}"),
            None => panic!("closed without saying why"),
        }
    }
    assert!(
        (20..=22).contains(&accepted),
        "the burst passes: {accepted}"
    );
    assert_eq!(refused, 19, "refused lines are answered until the limit");
    assert_eq!(
        client.lines.next_line().await.unwrap(),
        None,
        "then the connection closes"
    );
}

#[tokio::test]
async fn a_pipeline_gets_every_reply_in_order_even_after_a_half_close() {
    let server = start(ServeConfig::defaults()).await;
    // Raw: write a pipeline, close the sending side (as `nc -N` does), then read.
    let mut stream = tokio::net::TcpStream::connect(&server.line).await.unwrap();
    let pipeline: String = (0..500)
        .map(|i| format!("PUB piped {i}\r\n"))
        .chain(["WHO nobody-here\r\n".to_string()])
        .collect();
    stream.write_all(pipeline.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer))
        .await
        .expect("the server closes once it has answered")
        .unwrap();
    let lines: Vec<&str> = answer.lines().skip(1).collect(); // after the greeting
    assert_eq!(lines.len(), 501, "{answer}");
    for (i, line) in lines[..500].iter().enumerate() {
        assert_eq!(*line, format!("+OK piped offset {i}"));
    }
    assert!(lines[500].contains("nobody-here"), "{}", lines[500]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_told_and_disconnected_after_the_idle_timeout() {
    let server = start(ServeConfig::defaults()).await;
    let mut client = Client::connect(&server.line).await;
    let started = tokio::time::Instant::now();
    // Paused time: the 15-minute idle timer fires as soon as everything waits. (The
    // helper's 20 s deadline would fire first, so wait longer here.)
    let line = tokio::time::timeout(Duration::from_secs(3600), client.lines.next_line())
        .await
        .expect("told within the hour")
        .unwrap()
        .unwrap();
    assert!(line.starts_with("-ERR idle for"), "{line}");
    assert!(started.elapsed() >= Duration::from_secs(15 * 60));
    assert_eq!(
        client.lines.next_line().await.unwrap(),
        None,
        "then the connection closes"
    );
}

/// A web page can make a browser send an HTTP request to the line protocol's port (a form
/// posted to `http://127.0.0.1:7071/`); its body must not run as commands.
#[tokio::test]
async fn an_http_request_on_the_line_port_runs_nothing_and_is_closed() {
    let server = start(ServeConfig::defaults()).await;
    let mut watcher = Client::connect(&server.line).await;
    assert_eq!(watcher.ask("SUB news").await, "+OK subscribed to news");
    let mut attacker = TcpStream::connect(&server.line).await.unwrap();
    let body = "PUB news forged\r\n";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:7071\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    attacker.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = tokio::time::timeout(
        DEADLINE,
        tokio::io::AsyncReadExt::read_to_string(&mut attacker, &mut answer),
    )
    .await
    .expect("the connection is closed");
    assert!(read.is_ok(), "{read:?}");
    assert!(
        answer.contains("-ERR this is Weir's line protocol, not HTTP; closing"),
        "{answer}"
    );
    // Nothing was published: the next message on `news` is the watcher's own, at offset 0.
    assert_eq!(watcher.ask("PUB news real").await, "+OK news offset 0");
    assert_eq!(watcher.event().await, "EVENT news 0 real");
}
