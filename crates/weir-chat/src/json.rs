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
            let from = start_from(request.get("from"), request.get("epoch"))?;
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

/// Where a `subscribe` starts: `from` is absent (now), `"earliest"`, a position token
/// `"EPOCH-OFFSET"` (as events carry), or an offset, with the topic's `epoch` beside it
/// (as message frames carry it) to be told when the offsets started again.
fn start_from(from: Option<&Value>, epoch: Option<&Value>) -> Result<StartFrom, String> {
    const EXPLAINED: &str = "field \"from\" must be an offset (a number, with \"epoch\" beside it), a position \"EPOCH-OFFSET\" or \"earliest\"";
    let epoch = match epoch {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .ok_or("field \"epoch\" must be a topic's epoch (a number)")?,
        ),
    };
    match (from, epoch) {
        (None | Some(Value::Null), None) => Ok(StartFrom::Now),
        (Some(Value::Number(n)), epoch) => {
            let offset = n.as_u64().ok_or(EXPLAINED)?;
            Ok(match epoch {
                Some(epoch) => StartFrom::At(weir_pubsub::Position { epoch, offset }),
                None => StartFrom::Offset(offset),
            })
        }
        (Some(Value::String(text)), None) => text.parse().map_err(|_| EXPLAINED.into()),
        (None | Some(Value::Null), Some(_)) => {
            Err("field \"epoch\" goes with an offset in \"from\"".into())
        }
        _ => Err(EXPLAINED.into()),
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
        for frame in [
            r#"{"op":"subscribe","topic":"t","from":5,"epoch":77}"#,
            r#"{"op":"subscribe","topic":"t","from":"77-5"}"#,
        ] {
            assert_eq!(
                parse_frame(frame),
                Ok(Command::Subscribe {
                    pattern: "t".into(),
                    from: StartFrom::At(weir_pubsub::Position {
                        epoch: 77,
                        offset: 5
                    })
                }),
                "{frame}"
            );
        }
        for frame in [
            r#"{"op":"subscribe","topic":"t","epoch":77}"#,
            r#"{"op":"subscribe","topic":"t","from":"77-5","epoch":77}"#,
            r#"{"op":"subscribe","topic":"t","from":-1}"#,
            r#"{"op":"subscribe","topic":"t","from":5,"epoch":"x"}"#,
            r#"{"op":"subscribe","topic":"t","from":"soon"}"#,
        ] {
            assert!(parse_frame(frame).is_err(), "{frame}");
        }
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
        assert!(parse_frame(r#"{"op":"subscribe","topic":"t","from":"5x"}"#)
            .unwrap_err()
            .contains("must be an offset"));
        assert!(parse_frame(r#"{"op":"frob","topic":"t"}"#)
            .unwrap_err()
            .starts_with("unknown op"));
    }
}
