//! The WebSocket's JSON frames as commands (docs/protocol.md): `{"op":"subscribe",
//! "topic":"t","from":5|"earliest"}`, `{"op":"unsubscribe","topic":"t"}`,
//! `{"op":"publish","topic":"t","payload":"text"}`, and the chat ops `nick`, `join`,
//! `part`, `say` and `who`. Pure, so it is tested without sockets.

use serde_json::Value;
use weir_pubsub::StartFrom;

use crate::{check_nickname, Command};

/// Reads one text frame; the error is the message for an `error` frame.
pub fn parse_frame(text: &str) -> Result<Command, String> {
    let Ok(Value::Object(request)) = serde_json::from_str::<Value>(text) else {
        return Err(
            "frames must be JSON objects such as {\"op\":\"subscribe\",\"topic\":\"news\"}".into(),
        );
    };
    let field = |name: &str| request.get(name).and_then(Value::as_str);
    let need = |name: &str| {
        field(name)
            .map(str::to_owned)
            .ok_or_else(|| format!("field \"{name}\" (a string) is required"))
    };
    match field("op") {
        Some("nick") => {
            let nick = need("nick")?;
            check_nickname(&nick).map_err(|error| error.to_string())?;
            return Ok(Command::Nick(nick));
        }
        Some("join") => return need("room").map(Command::Join),
        Some("part") => return need("room").map(Command::Part),
        Some("say") => {
            let room = need("room")?;
            return need("text").map(|text| Command::Say { room, text });
        }
        Some("who") => return need("room").map(Command::Who),
        _ => {}
    }
    let topic = need("topic")?;
    match field("op") {
        Some("subscribe") => {
            let from = match request.get("from") {
                None | Some(Value::Null) => StartFrom::Now,
                Some(Value::String(s)) if s == "earliest" => StartFrom::Earliest,
                Some(Value::Number(n)) if n.as_u64().is_some() => {
                    StartFrom::Offset(n.as_u64().unwrap_or(0))
                }
                Some(_) => {
                    return Err("field \"from\" must be an offset (a number) or \"earliest\"".into())
                }
            };
            Ok(Command::Subscribe {
                pattern: topic,
                from,
            })
        }
        Some("unsubscribe") => Ok(Command::Unsubscribe(topic)),
        Some("publish") => {
            let payload = field("payload")
                .ok_or("field \"payload\" (a string) is required to publish")?;
            Ok(Command::Publish {
                topic,
                payload: payload.as_bytes().to_vec().into(),
            })
        }
        Some(other) => Err(format!(
            "unknown op {other:?}; use subscribe, unsubscribe, publish, nick, join, part, say or who"
        )),
        None => Err("field \"op\" (a string) is required".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_op() {
        assert_eq!(
            parse_frame(r#"{"op":"subscribe","topic":"t","from":"earliest"}"#),
            Ok(Command::Subscribe {
                pattern: "t".into(),
                from: StartFrom::Earliest
            })
        );
        assert_eq!(
            parse_frame(r#"{"op":"subscribe","topic":"t","from":5}"#),
            Ok(Command::Subscribe {
                pattern: "t".into(),
                from: StartFrom::Offset(5)
            })
        );
        assert_eq!(
            parse_frame(r#"{"op":"say","room":"lobby","text":"hi"}"#),
            Ok(Command::Say {
                room: "lobby".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            parse_frame(r#"{"op":"publish","topic":"t","payload":"x"}"#),
            Ok(Command::Publish {
                topic: "t".into(),
                payload: "x".into()
            })
        );
    }

    #[test]
    fn explains_bad_frames() {
        assert!(parse_frame("[1]")
            .unwrap_err()
            .starts_with("frames must be JSON objects"));
        assert_eq!(
            parse_frame(r#"{"op":"join"}"#).unwrap_err(),
            "field \"room\" (a string) is required"
        );
        assert!(parse_frame(r#"{"op":"nick","nick":"a b"}"#)
            .unwrap_err()
            .contains("letters, digits"));
        assert!(parse_frame(r#"{"op":"subscribe","topic":"t","from":"5"}"#)
            .unwrap_err()
            .contains("must be an offset"));
        assert!(parse_frame(r#"{"op":"frob","topic":"t"}"#)
            .unwrap_err()
            .starts_with("unknown op"));
    }
}
