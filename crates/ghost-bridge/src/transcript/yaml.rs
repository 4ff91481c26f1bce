//! The YAML of transcript blocks, read straight into JSON values (the rules
//! are in the documentation of `transcript`): a builder fed by
//! `yaml-rust2`'s parser events that refuses what JSON cannot hold, and
//! stops the parser once nesting passes [`MAX_DEPTH`].

use std::cell::Cell;
use std::rc::Rc;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::{Event, Yaml};

use super::MAX_DEPTH;

/// The documents of `content`, or where (in the content, when known) and
/// why it cannot be read.
pub(super) fn load(content: &str) -> Result<Vec<Value>, (Option<Marker>, String)> {
    // The parser recurses once per nesting level; the builder stops feeding it
    // characters once the nesting is too deep, so hostile input cannot
    // overflow the stack. A panic in the parser is a bug there, reported as
    // this block's error rather than taking the caller down.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let stop = Rc::new(Cell::new(false));
        let mut builder = Builder::new(stop.clone());
        let chars = content.chars().take_while(|_| !stop.get());
        let parsed = Parser::new(chars).load(&mut builder, true);
        match (builder.error, parsed) {
            (Some((m, info)), _) => Err((Some(m), info)),
            (None, Err(e)) => Err((Some(*e.marker()), e.info().to_string())),
            (None, Ok(())) => Ok(builder.docs),
        }
    }));
    run.unwrap_or_else(|_| Err((None, "the YAML parser failed on this block".into())))
}

enum Frame {
    Seq(Vec<Value>),
    /// The mapping so far and the key waiting for its value.
    Map(Map<String, Value>, Option<String>),
}

/// Builds JSON values from the parser's events, refusing what JSON cannot
/// hold. The first error wins; later events are ignored.
struct Builder {
    docs: Vec<Value>,
    root: Option<Value>,
    stack: Vec<Frame>,
    error: Option<(Marker, String)>,
    stop: Rc<Cell<bool>>,
}

const CORE: &str = "tag:yaml.org,2002:";

fn tag_name(t: &Tag) -> String {
    if t.handle == CORE {
        format!("!!{}", t.suffix)
    } else {
        format!("{}{}", t.handle, t.suffix)
    }
}

fn yaml_float(v: &str) -> Result<Value, String> {
    let lower = v.to_ascii_lowercase();
    let bare = lower.trim_start_matches(['+', '-']);
    if bare == ".inf" || bare == ".nan" {
        return Err(format!("the float {v} cannot be represented in JSON"));
    }
    let f: f64 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a valid float"))?;
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("the float {v} cannot be represented in JSON"))
}

impl Builder {
    fn new(stop: Rc<Cell<bool>>) -> Builder {
        Builder {
            docs: Vec::new(),
            root: None,
            stack: Vec::new(),
            error: None,
            stop,
        }
    }

    fn fail(&mut self, mark: Marker, msg: String) {
        if self.error.is_none() {
            self.error = Some((mark, msg));
        }
        self.stop.set(true);
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map(_, None)))
    }

    fn check_node(
        &mut self,
        mark: Marker,
        anchor: usize,
        tag: Option<&Tag>,
        allowed: &str,
    ) -> bool {
        if anchor > 0 {
            self.fail(
                mark,
                "YAML anchors and aliases (&name, *name) are not supported: write the value out"
                    .into(),
            );
            return false;
        }
        if let Some(t) = tag {
            if !(t.handle == CORE && t.suffix == allowed) {
                self.fail(
                    mark,
                    format!("the YAML tag {} is not supported here", tag_name(t)),
                );
                return false;
            }
        }
        true
    }

    fn open(&mut self, mark: Marker, frame: Frame, what: &str) {
        if self.expecting_key() {
            self.fail(
                mark,
                format!("a mapping key must be a string, found a {what}"),
            );
            return;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.fail(mark, format!("nested deeper than {MAX_DEPTH} levels"));
            return;
        }
        self.stack.push(frame);
    }

    fn close(&mut self, mark: Marker) {
        let v = match self.stack.pop() {
            Some(Frame::Seq(items)) => Value::Array(items),
            Some(Frame::Map(m, _)) => Value::Object(m),
            None => return,
        };
        self.insert(mark, v);
    }

    fn insert(&mut self, mark: Marker, v: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq(items)) => items.push(v),
            Some(Frame::Map(m, key)) => match key.take() {
                Some(k) => {
                    if m.contains_key(&k) {
                        self.fail(mark, format!("duplicate key {k:?} in a mapping"));
                    } else {
                        m.insert(k, v);
                    }
                }
                // Keys are handled in `scalar`; collections as keys fail in `open`.
                None => self.fail(mark, "a mapping key must be a string".into()),
            },
        }
    }

    fn scalar(&mut self, mark: Marker, v: String, style: TScalarStyle, tag: Option<Tag>) {
        let resolved = match (&tag, style) {
            (Some(t), _) if t.handle == CORE => match t.suffix.as_str() {
                "str" => Ok(Value::String(v.clone())),
                "int" => match Yaml::from_str(&v) {
                    Yaml::Integer(i) => Ok(Value::from(i)),
                    _ => Err(format!("{v:?} is not an integer (tagged !!int)")),
                },
                "float" => yaml_float(&v),
                "bool" => match v.as_str() {
                    "true" | "True" | "TRUE" => Ok(Value::Bool(true)),
                    "false" | "False" | "FALSE" => Ok(Value::Bool(false)),
                    _ => Err(format!("{v:?} is not a boolean (tagged !!bool)")),
                },
                "null" => match v.as_str() {
                    "" | "~" | "null" | "Null" | "NULL" => Ok(Value::Null),
                    _ => Err(format!("{v:?} is not null (tagged !!null)")),
                },
                _ => Err(format!("the YAML tag {} is not supported", tag_name(t))),
            },
            (Some(t), _) => Err(format!("the YAML tag {} is not supported", tag_name(t))),
            (None, TScalarStyle::Plain) => match Yaml::from_str(&v) {
                Yaml::Null => Ok(Value::Null),
                Yaml::Boolean(b) => Ok(Value::Bool(b)),
                Yaml::Integer(i) => Ok(Value::from(i)),
                Yaml::Real(r) => yaml_float(&r),
                _ => Ok(Value::String(v.clone())),
            },
            (None, _) => Ok(Value::String(v.clone())),
        };
        let value = match resolved {
            Ok(x) => x,
            Err(e) => return self.fail(mark, e),
        };
        if self.expecting_key() {
            match value {
                Value::String(k) => {
                    if let Some(Frame::Map(_, key)) = self.stack.last_mut() {
                        *key = Some(k);
                    }
                }
                other => self.fail(
                    mark,
                    format!("the mapping key {other} is not a string: quote it (\"{v}\")"),
                ),
            }
        } else {
            self.insert(mark, value);
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
            Event::DocumentEnd => {
                let doc = self.root.take().unwrap_or(Value::Null);
                self.docs.push(doc);
            }
            Event::Alias(_) => self.fail(
                mark,
                "YAML anchors and aliases (&name, *name) are not supported: write the value out"
                    .into(),
            ),
            Event::SequenceStart(anchor, tag) => {
                if self.check_node(mark, anchor, tag.as_ref(), "seq") {
                    self.open(mark, Frame::Seq(Vec::new()), "sequence");
                }
            }
            Event::MappingStart(anchor, tag) => {
                if self.check_node(mark, anchor, tag.as_ref(), "map") {
                    self.open(mark, Frame::Map(Map::new(), None), "mapping");
                }
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(mark),
            Event::Scalar(v, style, anchor, tag) => {
                // The tag is checked in `scalar`, per core type.
                if self.check_node(mark, anchor, None, "") {
                    self.scalar(mark, v, style, tag);
                }
            }
        }
    }
}
