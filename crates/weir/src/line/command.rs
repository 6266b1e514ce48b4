//! Parsing one line of the line protocol into a command. Pure, so it is tested without
//! sockets; see docs/protocol.md for the protocol.

/// A client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Nick(String),
    Join(String),
    Part(String),
    Say {
        room: String,
        text: String,
    },
    Who(String),
    Sub {
        pattern: String,
        from: Option<String>,
    },
    Unsub(String),
    Pub {
        topic: String,
        payload: String,
    },
    Auth(String),
    Help,
    Quit,
}

/// Why a line is not a command; the text is sent back after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError(pub(crate) String);

/// The longest nickname, in characters.
pub(crate) const MAX_NICK_CHARS: usize = 32;

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
            if nick.chars().count() > MAX_NICK_CHARS
                || !nick
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ParseError(format!(
                    "nickname {nick:?} must be 1 to {MAX_NICK_CHARS} letters, digits, '_' or '-'"
                )));
            }
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
            Ok(Command::Sub {
                pattern: pattern.to_string(),
                from: args.next().map(str::to_string),
            })
        }
        "UNSUB" => Ok(Command::Unsub(word("a topic or pattern")?)),
        "PUB" => {
            two("a topic", "a payload").map(|(topic, payload)| Command::Pub { topic, payload })
        }
        "AUTH" => Ok(Command::Auth(word("a token")?)),
        "HELP" => Ok(Command::Help),
        "QUIT" => Ok(Command::Quit),
        "" => Err(ParseError("empty line; try HELP".into())),
        other => Err(ParseError(format!("unknown command {other:?}; try HELP"))),
    }
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
            Ok(Command::Sub {
                pattern: "orders.*".into(),
                from: Some("earliest".into())
            })
        );
        assert_eq!(
            parse("PUB news big news"),
            Ok(Command::Pub {
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
    }
}
