//! Parsing one line of the line protocol into a command. Pure, so it is tested without
//! sockets; see docs/protocol.md for the protocol.

use weir_pubsub::StartFrom;

use crate::{check_nickname, Command};

/// Why a line is not a command; the text is sent back after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(pub(crate) String);

/// Parses a line (without its line ending).
pub(crate) fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim_end_matches('\r');
    let (verb, rest) = line
        .trim_start()
        .split_once(' ')
        .unwrap_or((line.trim(), ""));
    let rest = rest.trim_start();
    let word = |what: &str| -> Result<String, ParseError> {
        let arg = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| ParseError(format!("{} needs {what}", verb.to_uppercase())))?;
        Ok(arg.to_string())
    };
    let two = |first: &str, second: &str| -> Result<(String, String), ParseError> {
        match rest.split_once(' ') {
            Some((a, b)) if !a.is_empty() && !b.trim().is_empty() => {
                Ok((a.to_string(), b.to_string()))
            }
            _ => Err(ParseError(format!(
                "{} needs {first} and {second}",
                verb.to_uppercase()
            ))),
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "NICK" => {
            let nick = word("a nickname")?;
            check_nickname(&nick).map_err(|error| ParseError(error.to_string()))?;
            Ok(Command::Nick(nick))
        }
        "JOIN" => Ok(Command::Join(word("a room")?)),
        "PART" => Ok(Command::Part(word("a room")?)),
        "SAY" => two("a room", "some text").map(|(room, text)| Command::Say { room, text }),
        "WHO" => Ok(Command::Who(word("a room")?)),
        "SUB" => {
            let mut args = rest.split_whitespace();
            let pattern = args
                .next()
                .ok_or_else(|| ParseError("SUB needs a topic or pattern".into()))?;
            let from = match args.next() {
                None => StartFrom::Now,
                Some(from) => from
                    .parse()
                    .map_err(|error: weir_pubsub::StartFromError| ParseError(error.to_string()))?,
            };
            Ok(Command::Subscribe {
                pattern: pattern.to_string(),
                from,
            })
        }
        "UNSUB" => Ok(Command::Unsubscribe(word("a topic or pattern")?)),
        "PUB" => two("a topic", "a payload").map(|(topic, payload)| Command::Publish {
            topic,
            payload: payload.into(),
        }),
        "AUTH" => Ok(Command::Auth(word("a token")?)),
        "HELP" => Ok(Command::Help),
        "QUIT" => Ok(Command::Quit),
        "" => Err(ParseError("empty line; try HELP".into())),
        other => Err(ParseError(format!("unknown command {other:?}; try HELP"))),
    }
}

/// Whether `line` is a piece of an HTTP request: a request line (`POST / HTTP/1.1`) or a
/// header (`Host: 127.0.0.1:7071`). A browser can be made to send an HTTP request to this
/// port (a form posted to `http://127.0.0.1:7071/`), whose body would otherwise run as
/// commands; no command looks like either (a verb has no colon, and none ends in
/// `HTTP/1.x`), so such a connection is closed before anything runs, as Redis does.
pub(crate) fn looks_like_http(line: &str) -> bool {
    let line = line.trim_end_matches('\r');
    let mut words = line.split(' ');
    let request_line = matches!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some(method), Some(_target), Some(version), None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && version.starts_with("HTTP/")
    );
    let header = line.split_once(':').is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    request_line || header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("NICK ada"), Ok(Command::Nick("ada".into())));
        assert_eq!(parse("nick ada\r"), Ok(Command::Nick("ada".into())));
        assert_eq!(
            parse("SAY lobby hello there"),
            Ok(Command::Say {
                room: "lobby".into(),
                text: "hello there".into()
            })
        );
        assert_eq!(
            parse("SUB orders.* earliest"),
            Ok(Command::Subscribe {
                pattern: "orders.*".into(),
                from: StartFrom::Earliest
            })
        );
        assert_eq!(
            parse("PUB news big news"),
            Ok(Command::Publish {
                topic: "news".into(),
                payload: "big news".into()
            })
        );
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
        assert_eq!(
            parse("AUTH secret-token"),
            Ok(Command::Auth("secret-token".into()))
        );
    }

    #[test]
    fn http_is_recognised_and_commands_are_not() {
        for http in [
            "POST / HTTP/1.1",
            "GET /v1/topics HTTP/1.0\r",
            "Host: 127.0.0.1:7071",
            "Content-Type: text/plain",
            "origin: http://evil.example",
        ] {
            assert!(looks_like_http(http), "{http}");
        }
        for command in [
            "PUB news a: b",
            "SAY lobby GET / HTTP/1.1",
            "NICK ada",
            "SUB orders.* earliest",
            "AUTH abc:def",
            "HELP",
        ] {
            assert!(!looks_like_http(command), "{command}");
        }
    }

    #[test]
    fn explains_bad_lines() {
        assert_eq!(
            parse("FROB x").unwrap_err().0,
            "unknown command \"FROB\"; try HELP"
        );
        assert_eq!(
            parse("SAY lobby").unwrap_err().0,
            "SAY needs a room and some text"
        );
        assert_eq!(parse("JOIN").unwrap_err().0, "JOIN needs a room");
        assert!(parse("NICK a!b").unwrap_err().0.contains("letters, digits"));
        assert!(parse("").is_err());
        assert_eq!(
            parse("SUB news soon").unwrap_err().0,
            "\"soon\" is not a place to start; use a position EPOCH-OFFSET (as events carry), an offset or 'earliest'"
        );
    }
}
