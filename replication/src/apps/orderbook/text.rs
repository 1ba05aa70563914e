//! The text command set: what `redis-cli` (through a RESP front end) or a person types.
//!
//! ```text
//! BUY  <account> <symbol> <quantity> [<price>]   no price: a market order
//! SELL <account> <symbol> <quantity> [<price>]
//! CANCEL  <account> <order>
//! REPLACE <account> <order> <quantity> [<price>] the open quantity it should have;
//!                                                no price: keep the price
//! BOOK  <symbol> [<depth>]                       depth: 10 unless given
//! FILLS <account> [<most>]                       all waiting unless given
//! BOOK.DIGEST                                    a digest of the whole state
//! ```
//!
//! Command names are case-insensitive; prices are integers in ticks (e.g. cents).
//! [`parse`] takes the arguments as a RESP array carries them; [`to_args`] makes them.

use super::command::{Command, NewOrder, Side};

/// The commands of the book, as a RESP front end routes them.
pub const COMMANDS: [&str; 7] = ["BUY", "SELL", "CANCEL", "REPLACE", "BOOK", "FILLS", "BOOK.DIGEST"];

/// A `BOOK` answer's depth when none is given.
pub const DEPTH_DEFAULT: u32 = 10;

/// Parses one command from its arguments (the name first).
///
/// The error is the whole RESP error line without its `-`, code word first, as Redis
/// writes them: `ERR wrong number of arguments for 'buy' command`,
/// `BADQTY quantity must be a positive integer of at most 10^12, not 0`.
pub fn parse(args: &[&[u8]]) -> Result<Command, String> {
    let Some((name, rest)) = args.split_first() else {
        return Err("ERR empty command".into());
    };
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    let arity = |min: usize, max: usize| {
        if rest.len() < min || rest.len() > max {
            return Err(format!("ERR wrong number of arguments for '{lower}' command"));
        }
        Ok(())
    };
    let command = match lower.as_str() {
        "buy" | "sell" => {
            arity(3, 4)?;
            let side = if lower == "buy" { Side::Buy } else { Side::Sell };
            Command::Submit(NewOrder {
                account: rest[0].to_vec(),
                symbol: rest[1].to_vec(),
                side,
                quantity: number(rest[2], "BADQTY quantity must be a positive integer of at most 10^12")?,
                price: rest.get(3).map(|price| number(price, PRICE)).transpose()?,
            })
        }
        "cancel" => {
            arity(2, 2)?;
            Command::Cancel { account: rest[0].to_vec(), order: number(rest[1], ORDER)? }
        }
        "replace" => {
            arity(3, 4)?;
            Command::Replace {
                account: rest[0].to_vec(),
                order: number(rest[1], ORDER)?,
                quantity: number(rest[2], "BADQTY quantity must be a positive integer of at most 10^12")?,
                price: rest.get(3).map(|price| number(price, PRICE)).transpose()?,
            }
        }
        "book" => {
            arity(1, 2)?;
            let depth = rest.get(1).map(|depth| number(depth, "ERR depth must be between 1 and 1000"));
            let depth = depth.transpose()?.map_or(Ok(DEPTH_DEFAULT), u32::try_from);
            Command::Book {
                symbol: rest[0].to_vec(),
                depth: depth.map_err(|_| "ERR depth must be between 1 and 1000".to_string())?,
            }
        }
        "fills" => {
            arity(1, 2)?;
            let most = rest.get(1).map(|most| number(most, "ERR the count must be a non-negative integer"));
            Command::Fills {
                account: rest[0].to_vec(),
                most: most.transpose()?.map_or(u32::MAX, |most| u32::try_from(most).unwrap_or(u32::MAX)),
            }
        }
        "book.digest" => {
            arity(0, 0)?;
            Command::Digest
        }
        _ => {
            let name = String::from_utf8_lossy(name);
            return Err(format!(
                "ERR unknown command '{name}', the order book knows {}",
                COMMANDS.join(", ")
            ));
        }
    };
    command.validate().map_err(|refusal| format!("{} {refusal}", refusal.code()))?;
    Ok(command)
}

/// The arguments that [`parse`] reads back as `command`: what a RESP client sends.
pub fn to_args(command: &Command) -> Vec<Vec<u8>> {
    let number = |value: u64| value.to_string().into_bytes();
    let mut args: Vec<Vec<u8>> = match command {
        Command::Submit(order) => vec![
            match order.side {
                Side::Buy => b"BUY".to_vec(),
                Side::Sell => b"SELL".to_vec(),
            },
            order.account.clone(),
            order.symbol.clone(),
            number(order.quantity),
        ],
        Command::Cancel { account, order } => vec![b"CANCEL".to_vec(), account.clone(), number(*order)],
        Command::Replace { account, order, quantity, .. } => {
            vec![b"REPLACE".to_vec(), account.clone(), number(*order), number(*quantity)]
        }
        Command::Book { symbol, depth } => vec![b"BOOK".to_vec(), symbol.clone(), number(u64::from(*depth))],
        Command::Fills { account, most } => {
            vec![b"FILLS".to_vec(), account.clone(), number(u64::from(*most))]
        }
        Command::Digest => vec![b"BOOK.DIGEST".to_vec()],
    };
    if let Command::Submit(NewOrder { price: Some(price), .. })
    | Command::Replace { price: Some(price), .. } = command
    {
        args.push(number(*price));
    }
    args
}

const PRICE: &str = "BADPRICE price must be a positive integer number of ticks of at most 10^12";
const ORDER: &str = "ERR an order id is a positive integer";

/// A decimal u64, or `what`, then what was given.
fn number(text: &[u8], what: &str) -> Result<u64, String> {
    std::str::from_utf8(text)
        .ok()
        .filter(|text| text.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("{what}, not '{}'", String::from_utf8_lossy(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Command, String> {
        let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        parse(&args)
    }

    #[test]
    fn commands_parse() {
        let order = |side, quantity, price| {
            Command::Submit(NewOrder {
                account: b"alice".to_vec(),
                symbol: b"ACME".to_vec(),
                side,
                quantity,
                price,
            })
        };
        assert_eq!(run("BUY alice ACME 100 10150"), Ok(order(Side::Buy, 100, Some(10150))));
        assert_eq!(run("sell alice ACME 5"), Ok(order(Side::Sell, 5, None)));
        assert_eq!(run("Cancel bob 7"), Ok(Command::Cancel { account: b"bob".to_vec(), order: 7 }));
        assert_eq!(
            run("REPLACE bob 7 50"),
            Ok(Command::Replace { account: b"bob".to_vec(), order: 7, quantity: 50, price: None })
        );
        assert_eq!(
            run("REPLACE bob 7 50 99"),
            Ok(Command::Replace { account: b"bob".to_vec(), order: 7, quantity: 50, price: Some(99) })
        );
        assert_eq!(run("BOOK ACME"), Ok(Command::Book { symbol: b"ACME".to_vec(), depth: 10 }));
        assert_eq!(run("BOOK ACME 3"), Ok(Command::Book { symbol: b"ACME".to_vec(), depth: 3 }));
        assert_eq!(run("FILLS bob"), Ok(Command::Fills { account: b"bob".to_vec(), most: u32::MAX }));
        assert_eq!(run("FILLS bob 2"), Ok(Command::Fills { account: b"bob".to_vec(), most: 2 }));
        assert_eq!(run("book.Digest"), Ok(Command::Digest));
    }

    #[test]
    fn arguments_parse_back_to_their_command() {
        let mut load = crate::apps::orderbook::LoadGenerator::new(7, Default::default());
        let mut book = crate::apps::orderbook::OrderBook::new();
        for _ in 0..5_000 {
            let command = load.next_command();
            let args = to_args(&command);
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            assert_eq!(parse(&args), Ok(command.clone()));
            let response = book.execute(&command);
            load.observe(&command, &response);
        }
        assert_eq!(parse(&[b"BOOK.DIGEST"]), Ok(Command::Digest));
        assert_eq!(to_args(&Command::Digest), [b"BOOK.DIGEST".to_vec()]);
    }

    #[test]
    fn bad_commands_get_redis_style_errors() {
        let cases = [
            ("", "ERR empty command"),
            ("BUY alice ACME", "ERR wrong number of arguments for 'buy' command"),
            ("CANCEL alice", "ERR wrong number of arguments for 'cancel' command"),
            ("BUY alice ACME 0 100", "BADQTY quantity must be a positive integer of at most 10^12, not 0"),
            (
                "BUY alice ACME -5 100",
                "BADQTY quantity must be a positive integer of at most 10^12, not '-5'",
            ),
            ("SELL alice ACME 1.5", "BADQTY quantity must be a positive integer of at most 10^12, not '1.5'"),
            (
                "BUY alice ACME 5 0",
                "BADPRICE price must be a positive integer number of ticks of at most 10^12, not 0",
            ),
            (
                "BUY alice ACME 5 +3",
                "BADPRICE price must be a positive integer number of ticks of at most 10^12, not '+3'",
            ),
            ("CANCEL alice x", "ERR an order id is a positive integer, not 'x'"),
            ("BOOK ACME 0", "ERR depth must be between 1 and 1000, not 0"),
            ("BUY alice WAYTOOLONGSYMBOLNAME 1 1", "BADNAME symbol must be 1 to 16 bytes without spaces"),
            ("BOOK.DIGEST x", "ERR wrong number of arguments for 'book.digest' command"),
            (
                "FROB x",
                "ERR unknown command 'FROB', the order book knows BUY, SELL, CANCEL, REPLACE, BOOK, FILLS, BOOK.DIGEST",
            ),
        ];
        for (line, error) in cases {
            assert_eq!(run(line), Err(error.to_string()), "{line}");
        }
    }
}
