//! Label and field selectors, parsed and matched as Kubernetes does
//! (apimachinery `pkg/labels/selector.go` and `pkg/fields/selector.go`), and the
//! fields each kind offers to field selectors (the registries' `GetAttrs`).
//!
//! Error texts are Kubernetes' own, so `kubectl` users see familiar messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::{Map, Value};

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// One requirement of a label selector string (key, operator or values) is bad.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A label selector token out of place between requirements.
    #[error("found '{found}', expected: {expected}")]
    Syntax {
        found: String,
        expected: &'static str,
    },
    /// A structured selector's key or values are invalid.
    #[error("{0}")]
    Invalid(String),
    /// A structured selector's operator is not In, NotIn, Exists or DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    Operator(String),
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A field selector value with a backslash before anything but `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    FieldEscape(String),
    /// A field selector value with a bare `,` or `=` (Kubernetes prints the code point).
    #[error("invalid field selector: unescaped character in value: {}", u32::from(*.0))]
    FieldUnescaped(char),
}

// ---------------------------------------------------------------------------
// Label selectors

/// A label requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without duplicates when parsed from a string.
    values: Vec<String>,
}

impl Requirement {
    /// Checks key, operator arity and values as `labels.NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let mut errs = Vec::new();
        errs.extend(validate_key(key, "key"));
        let arity = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(detail) = arity {
            errs.push(format!(
                "values: Invalid value: {}: {detail}",
                go_string_slice(&values)
            ));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(invalid(
                        &format!("values[{i}]"),
                        v,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = label_value_errors(v);
            if !msgs.is_empty() {
                errs.push(invalid(&format!("values[{i}][{key}]"), v, &msgs.join("; ")));
            }
        }
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(SelectorError::Invalid(aggregate(errs)))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                get(&self.key).is_some_and(|v| has(&v))
            }
            Operator::NotIn | Operator::NotEquals => get(&self.key).is_none_or(|v| !has(&v)),
            Operator::Exists => get(&self.key).is_some(),
            Operator::DoesNotExist => get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = get(&self.key).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "{op}({})", values.join(","))
        } else {
            write!(f, "{op}{}", values.join(","))
        }
    }
}

/// A label selector: requirements that must all hold. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses `kubectl -l` syntax: `a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1,m<2`.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser {
            items: lex(s),
            pos: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// A structured selector (`matchLabels` and `matchExpressions`), as
    /// `metav1.LabelSelectorAsSelector` converts it. An empty one selects everything;
    /// a missing one (`None` in the caller's hands) selects nothing in Kubernetes.
    pub fn from_label_selector(
        sel: &metav1::LabelSelector,
    ) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::Operator(other.to_string())),
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(&expr.key, operator, values)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// An equality selector for a label map such as `Service.spec.selector`, unvalidated
    /// (`labels.SelectorFromSet`).
    pub fn from_map(labels: &BTreeMap<String, String>) -> LabelSelector {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        LabelSelector { requirements }
    }

    /// Whether `labels` (an object's `metadata.labels`; non-string values count as absent)
    /// satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
        self.requirements.iter().all(|r| r.matches(&get))
    }

    /// Matches an object's `metadata.labels` (missing labels are none).
    pub fn matches_object(&self, obj: &Value) -> bool {
        let empty = Map::new();
        let labels = at(obj, &["metadata", "labels"]).and_then(Value::as_object);
        self.matches(labels.unwrap_or(&empty))
    }

    /// Whether this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn special_token(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

/// The Kubernetes lexer: the longest operator made of special characters, or a run of
/// anything else (`in` and `notin` as keywords). A NUL byte ends the input, as in Go.
/// Every single special character is a token, so Go's error token cannot occur.
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() || b[pos] == 0 {
            out.push((Token::End, String::new()));
            return out;
        }
        let start = pos;
        if is_special(b[pos]) {
            let mut tok = Token::End;
            while pos < b.len() && is_special(b[pos]) {
                match special_token(&s[start..=pos]) {
                    Some(t) => tok = t,
                    None => break,
                }
                pos += 1;
            }
            out.push((tok, s[start..pos].to_string()));
        } else {
            while pos < b.len() && b[pos] != 0 && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            if pos < b.len() && b[pos] == 0 {
                pos += 1;
            }
            let tok = match lit {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            };
            out.push((tok, lit.to_string()));
        }
    }
}

/// Where the parser is: after a key (`in`/`notin` are operators) or among values
/// (they are plain identifiers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

impl Parser {
    fn lookahead(&self, ctx: Context) -> (Token, String) {
        let (tok, lit) = self.items[self.pos.min(self.items.len() - 1)].clone();
        (Self::in_context(tok, ctx), lit)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let item = self.lookahead(ctx);
        self.pos += 1;
        item
    }

    fn in_context(tok: Token, ctx: Context) -> Token {
        match tok {
            Token::In | Token::NotIn if ctx == Context::Values => Token::Identifier,
            t => t,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.requirement().map_err(SelectorError::Requirement)?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(syntax(l2, "identifier after ','"));
                            }
                        }
                        _ => return Err(syntax(l, "',' or 'end of string'")),
                    }
                }
                Token::End => return Ok(requirements),
                _ => return Err(syntax(lit, "!, identifier, or 'end of string'")),
            }
        }
    }

    /// One requirement; the error text is what follows "unable to parse requirement: ".
    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.key_and_inferred_operator()?;
        if let Some(op) = inferred {
            return Requirement::new(&key, op, Vec::new()).map_err(|e| e.to_string());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values.into_iter().collect()).map_err(|e| e.to_string())
    }

    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let mut op = None;
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        if let Some(e) = validate_key(&lit, "<nil>") {
            return Err(e);
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::End | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b,c)`; empty entries (`()`, `(a,)`, `(,a)`) stand for the empty value.
    fn set_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.identifiers()?;
                self.consume(Context::Values); // the ')' that ended the list
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<BTreeSet<String>, String> {
        let mut s = BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    s.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if s.is_empty() {
                        s.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        s.insert(String::new());
                        return Ok(s);
                    }
                    if tok2 == Token::Comma {
                        self.consume(Context::Values);
                        s.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::End | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(BTreeSet::from([lit]))
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

fn syntax(found: String, expected: &'static str) -> SelectorError {
    SelectorError::Syntax { found, expected }
}

// ---------------------------------------------------------------------------
// Validation (apimachinery `pkg/util/validation`), with Kubernetes' messages

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// Go's `validation.RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: String = examples
        .iter()
        .map(|e| format!("'{e}', "))
        .collect::<Vec<_>>()
        .join(" or ");
    format!("{msg} (e.g. {examples}regex used for validation is '{fmt}')")
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || *c == b'-')
    })
}

/// `validation.IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns1123_subdomain(prefix) {
                    let e = regex_error(
                        DNS1123_SUBDOMAIN_MSG,
                        DNS1123_SUBDOMAIN_FMT,
                        &["example.com"],
                    );
                    errs.push(format!("prefix part {e}"));
                }
            }
            *name
        }
        _ => {
            let e = regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"],
            );
            return vec![format!(
                "a qualified name {e} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        let e = regex_error(
            QUALIFIED_NAME_MSG,
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        );
        errs.push(format!("name part {e}"));
    }
    errs
}

/// `validation.IsValidLabelValue`: at most 63 characters, empty or a qualified name part.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// A label key's field error; `path` is Go's rendering of the field path.
fn validate_key(key: &str, path: &str) -> Option<String> {
    let errs = qualified_name_errors(key);
    (!errs.is_empty()).then(|| invalid(path, key, &errs.join("; ")))
}

/// Go's `field.Invalid(path, value, detail).Error()` for a string value.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value:?}: {detail}")
}

/// Go's `%#v` of a `[]string`, as field errors print a bad value list.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Go's `utilerrors.Aggregate` message: one error alone, several deduplicated in brackets.
fn aggregate(errs: Vec<String>) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = errs
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    if unique.len() == 1 {
        unique.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", unique.join(", "))
    }
}

// ---------------------------------------------------------------------------
// Field selectors

/// A field requirement's operator (`=` and `==` are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `field op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOp,
    /// Unescaped.
    pub value: String,
}

/// A field selector: terms that must all hold. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `a=b,c!=d,e==f`; values escape `\`, `,` and `=` with a backslash.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw)) = split_term(term) else {
                return Err(SelectorError::FieldTerm {
                    selector: s.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_value(raw)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the fields satisfy every term; a field the object lacks reads as "".
    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = fields(&r.field).unwrap_or_default();
            (have == r.value) == (r.op == FieldOp::Equals)
        })
    }

    /// Matches against [`object_fields`] of `obj`.
    pub fn matches_object(&self, kind: &str, obj: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let fields = object_fields(kind, obj);
        self.matches(&|f| fields.get(f).cloned())
    }

    /// The terms, sorted as Kubernetes sorts them (by their text).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value an `=` term demands of `field`, if any (for lookups by name or node).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }

    /// The first field `kind` cannot be selected by, for a 400 `field label not supported: X`.
    pub fn unsupported_field(&self, kind: &str) -> Option<&str> {
        self.requirements
            .iter()
            .map(|r| r.field.as_str())
            .find(|f| !supported_field(kind, f))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
            let value = r
                .value
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('=', "\\=");
            write!(f, "{}{op}{value}", r.field)?;
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash (escapes stay in the terms).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator, trying `!=`, then `==`, then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    const OPS: [(&str, FieldOp); 3] = [
        ("!=", FieldOp::NotEquals),
        ("==", FieldOp::Equals),
        ("=", FieldOp::Equals),
    ];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPS.iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, kind)| (&term[..i], *kind, &rest[op.len()..]))
    })
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::FieldEscape(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::FieldUnescaped(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::FieldEscape("\\".to_string()));
    }
    Ok(out)
}

/// How a selectable field is read from an object.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// A string; missing reads as "".
    Str(&'static [&'static str]),
    /// A bool as Go's `strconv.FormatBool`; missing reads as "false".
    Bool(&'static [&'static str]),
    /// An integer; missing reads as "0".
    Int(&'static [&'static str]),
    /// The first of `status.podIPs`, else `status.podIP`.
    PodIp,
    /// `source.component`, else `reportingComponent`.
    EventSource,
}

/// The fields each kind can be selected by besides `metadata.name` and `metadata.namespace`
/// (the registries' `GetAttrs` in kubernetes `pkg/registry`).
fn kind_fields(kind: &str) -> &'static [(&'static str, Read)] {
    use Read::*;
    match kind {
        "Pod" => &[
            ("spec.nodeName", Str(&["spec", "nodeName"])),
            ("spec.restartPolicy", Str(&["spec", "restartPolicy"])),
            ("spec.schedulerName", Str(&["spec", "schedulerName"])),
            (
                "spec.serviceAccountName",
                Str(&["spec", "serviceAccountName"]),
            ),
            ("spec.hostNetwork", Bool(&["spec", "hostNetwork"])),
            ("status.phase", Str(&["status", "phase"])),
            ("status.podIP", PodIp),
            (
                "status.nominatedNodeName",
                Str(&["status", "nominatedNodeName"]),
            ),
        ],
        "Node" => &[("spec.unschedulable", Bool(&["spec", "unschedulable"]))],
        "Event" => &[
            ("involvedObject.kind", Str(&["involvedObject", "kind"])),
            (
                "involvedObject.namespace",
                Str(&["involvedObject", "namespace"]),
            ),
            ("involvedObject.name", Str(&["involvedObject", "name"])),
            ("involvedObject.uid", Str(&["involvedObject", "uid"])),
            (
                "involvedObject.apiVersion",
                Str(&["involvedObject", "apiVersion"]),
            ),
            (
                "involvedObject.resourceVersion",
                Str(&["involvedObject", "resourceVersion"]),
            ),
            (
                "involvedObject.fieldPath",
                Str(&["involvedObject", "fieldPath"]),
            ),
            ("reason", Str(&["reason"])),
            ("reportingComponent", Str(&["reportingComponent"])),
            ("source", EventSource),
            ("type", Str(&["type"])),
        ],
        "Secret" => &[("type", Str(&["type"]))],
        "Namespace" => &[("status.phase", Str(&["status", "phase"]))],
        "Service" => &[
            ("spec.clusterIP", Str(&["spec", "clusterIP"])),
            ("spec.type", Str(&["spec", "type"])),
        ],
        "ReplicaSet" | "ReplicationController" => {
            &[("status.replicas", Int(&["status", "replicas"]))]
        }
        "Job" => &[("status.successful", Int(&["status", "succeeded"]))],
        _ => &[],
    }
}

/// Whether `kind` can be selected by `field`.
pub fn supported_field(kind: &str, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || kind_fields(kind).iter().any(|(f, _)| *f == field)
}

/// The field set Kubernetes matches field selectors against, for `obj` of `kind`.
pub fn object_fields(kind: &str, obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        "metadata.name".into(),
        string_at(obj, &["metadata", "name"]),
    );
    out.insert(
        "metadata.namespace".into(),
        string_at(obj, &["metadata", "namespace"]),
    );
    for (field, source) in kind_fields(kind) {
        let value = match *source {
            Read::Str(path) => string_at(obj, path),
            Read::Bool(path) => at(obj, path)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string(),
            Read::Int(path) => at(obj, path)
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
            Read::PodIp => {
                let first = at(obj, &["status", "podIPs"])
                    .and_then(Value::as_array)
                    .and_then(|ips| ips.first())
                    .map(|ip| string_at(ip, &["ip"]))
                    .unwrap_or_default();
                if first.is_empty() {
                    string_at(obj, &["status", "podIP"])
                } else {
                    first
                }
            }
            Read::EventSource => {
                let component = string_at(obj, &["source", "component"]);
                if component.is_empty() {
                    string_at(obj, &["reportingComponent"])
                } else {
                    component
                }
            }
        };
        out.insert((*field).to_string(), value);
    }
    out
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn string_at(v: &Value, path: &[&str]) -> String {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let l = json!({"app": "web", "tier": "front", "n": "5", "empty": ""});
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("missing in (a)", false),
            ("app notin (db)", true),
            ("app notin (web,db)", false),
            ("missing notin (a)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("app>1", false),
            ("missing<1", false),
            ("empty=", true),
            ("empty in ()", true),
            ("empty in (,a)", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("  app = web , tier in ( front , back ) ", true),
            ("tier in (in,notin,front)", true),
            ("in=x", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel:?}: {e}"));
            assert_eq!(s.matches(&labels(l.clone())), *want, "{sel:?}");
        }
        assert!(
            LabelSelector::parse("app")
                .unwrap()
                .matches(&labels(json!({"app": ""})))
        );
        assert!(!LabelSelector::parse("app=x").unwrap().matches(&Map::new()));
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        assert!(
            LabelSelector::parse("app=web")
                .unwrap()
                .matches_object(&pod)
        );
        assert!(
            LabelSelector::parse("!app")
                .unwrap()
                .matches_object(&json!({"metadata": {}}))
        );
    }

    #[test]
    fn label_selectors_print_sorted() {
        let cases = [
            ("b in (y,x),a", "a,b in (x,y)"),
            ("!c,a==1,b!=2", "a==1,b!=2,!c"),
            ("x notin (),y>3,z<4", "x notin (),y>3,z<4"),
            ("k", "k"),
        ];
        for (sel, want) in cases {
            assert_eq!(LabelSelector::parse(sel).unwrap().to_string(), want);
        }
    }

    const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn label_selector_errors_read_like_kubernetes() {
        let long = "k".repeat(64);
        let cases: Vec<(&str, String)> = vec![
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt".into()),
            ("x in a", "unable to parse requirement: found 'a' expected: '('".into()),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'".into()),
            ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'".into()),
            ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
            ("x in (a,=)", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
            ("x=(", "unable to parse requirement: found '(', expected: identifier".into()),
            ("!", "unable to parse requirement: found '', expected: identifier".into()),
            ("x=a,", "found '', expected: identifier after ','".into()),
            ("x=a y", "found 'y', expected: ',' or 'end of string'".into()),
            ("!x=a", "found '=', expected: ',' or 'end of string'".into()),
            ("=a", "found '=', expected: !, identifier, or 'end of string'".into()),
            (",", "found ',', expected: !, identifier, or 'end of string'".into()),
            ("-x", format!("unable to parse requirement: <nil>: Invalid value: \"-x\": name part {NAME_RULE}")),
            (&long, format!("unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 characters")),
            ("/x", "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be non-empty".into()),
            ("Ex.com/x", "unable to parse requirement: <nil>: Invalid value: \"Ex.com/x\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()),
            ("a.io/", format!("unable to parse requirement: <nil>: Invalid value: \"a.io/\": name part must be non-empty; name part {NAME_RULE}")),
            ("a/b/c", format!("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name {NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")),
            ("x=-a", format!("unable to parse requirement: values[0][x]: Invalid value: \"-a\": {VALUE_RULE}")),
            ("x notin (a,-b)", format!("unable to parse requirement: values[0][x]: Invalid value: \"-b\": {VALUE_RULE}")),
            ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".into()),
            ("x<", "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer".into()),
        ];
        for (sel, want) in cases {
            let err = LabelSelector::parse(sel).expect_err(sel);
            assert_eq!(err.to_string(), want, "{sel:?}");
        }
        let long_value = format!("x={}", "v".repeat(64));
        let err = LabelSelector::parse(&long_value).unwrap_err().to_string();
        assert!(
            err.ends_with(": must be no more than 63 characters"),
            "{err}"
        );
    }

    fn structured(v: Value) -> metav1::LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn structured_selectors_convert_like_label_selector_as_selector() {
        let cases: &[(Value, &str, Value, bool)] = &[
            (json!({}), "", json!({"a": "b"}), true),
            (
                json!({"matchLabels": {"app": "web"}}),
                "app=web",
                json!({"app": "web"}),
                true,
            ),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "track", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ]}),
                "app=web,env notin (prod),!legacy,tier in (a,b),track",
                json!({"app": "web", "tier": "b", "track": "x"}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}),
                "tier in (a)",
                json!({"tier": "c"}),
                false,
            ),
        ];
        for (sel, text, l, want) in cases {
            let s = LabelSelector::from_label_selector(&structured(sel.clone())).unwrap();
            assert_eq!(s.to_string(), *text);
            assert_eq!(s.matches(&labels(l.clone())), *want, "{sel}");
        }
    }

    #[test]
    fn structured_selector_errors() {
        let cases: &[(Value, String)] = &[
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator".into(),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty".into(),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist".into(),
            ),
            (
                json!({"matchLabels": {"-a": "b"}}),
                format!("key: Invalid value: \"-a\": name part {NAME_RULE}"),
            ),
            (
                json!({"matchExpressions": [{"key": "-a", "operator": "In", "values": ["-b"]}]}),
                format!("[key: Invalid value: \"-a\": name part {NAME_RULE}, values[0][-a]: Invalid value: \"-b\": {VALUE_RULE}]"),
            ),
        ];
        for (sel, want) in cases {
            let err = LabelSelector::from_label_selector(&structured(sel.clone())).unwrap_err();
            assert_eq!(err.to_string(), *want, "{sel}");
        }
    }

    #[test]
    fn map_selectors_match_equality() {
        let s = LabelSelector::from_map(&BTreeMap::from([("app".into(), "web".into())]));
        assert!(s.matches(&labels(json!({"app": "web", "x": "y"}))));
        assert!(!s.matches(&labels(json!({"x": "y"}))));
        assert!(LabelSelector::from_map(&BTreeMap::new()).is_empty());
    }

    type Term<'a> = (&'a str, FieldOp, &'a str);

    #[test]
    fn field_selectors_parse() {
        let cases: &[(&str, &[Term<'_>])] = &[
            ("", &[]),
            ("a=b", &[("a", FieldOp::Equals, "b")]),
            ("a==b", &[("a", FieldOp::Equals, "b")]),
            ("a!=b", &[("a", FieldOp::NotEquals, "b")]),
            ("a=", &[("a", FieldOp::Equals, "")]),
            (
                "c=d,a!=b",
                &[("a", FieldOp::NotEquals, "b"), ("c", FieldOp::Equals, "d")],
            ),
            ("a=b\\,c\\=d\\\\", &[("a", FieldOp::Equals, "b,c=d\\")]),
            ("a=b,,", &[("a", FieldOp::Equals, "b")]),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel:?}: {e}"));
            let got: Vec<Term<'_>> = s
                .requirements()
                .iter()
                .map(|r| (r.field.as_str(), r.op, r.value.as_str()))
                .collect();
            assert_eq!(got, *want, "{sel:?}");
        }
        assert_eq!(
            FieldSelector::parse("b=1\\,2,a!=x").unwrap().to_string(),
            "a!=x,b=1\\,2"
        );
    }

    #[test]
    fn field_selector_errors_read_like_kubernetes() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
            (
                "a=\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(
                FieldSelector::parse(sel).unwrap_err().to_string(),
                want,
                "{sel:?}"
            );
        }
    }

    #[test]
    fn field_selectors_match_object_fields() {
        let unscheduled = json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": []}, "status": {"phase": "Pending"}});
        let scheduled = json!({"metadata": {"name": "q", "namespace": "ns"},
            "spec": {"nodeName": "n1", "hostNetwork": true, "restartPolicy": "Always",
                     "schedulerName": "default-scheduler", "serviceAccountName": "sa"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}], "podIP": "10.0.0.1",
                       "nominatedNodeName": "n2"}});
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let event = json!({"metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "u1",
                               "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{c}"},
            "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler"});
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        let namespace = json!({"metadata": {"name": "ns"}, "status": {"phase": "Active"}});
        let service = json!({"metadata": {"name": "svc"}, "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP"}});
        let rs = json!({"metadata": {"name": "rs"}, "status": {"replicas": 3}});
        let job = json!({"metadata": {"name": "j"}, "status": {}});
        let cases: &[(&str, &Value, &str, bool)] = &[
            ("Pod", &unscheduled, "spec.nodeName=", true),
            ("Pod", &unscheduled, "spec.nodeName!=", false),
            ("Pod", &unscheduled, "spec.hostNetwork=false", true),
            ("Pod", &unscheduled, "status.podIP=", true),
            ("Pod", &scheduled, "spec.nodeName=", false),
            (
                "Pod",
                &scheduled,
                "spec.nodeName=n1,status.phase=Running",
                true,
            ),
            ("Pod", &scheduled, "spec.hostNetwork=true", true),
            (
                "Pod",
                &scheduled,
                "spec.restartPolicy=Always,spec.schedulerName=default-scheduler",
                true,
            ),
            (
                "Pod",
                &scheduled,
                "spec.serviceAccountName=sa,status.nominatedNodeName=n2",
                true,
            ),
            ("Pod", &scheduled, "status.podIP=10.0.0.1", true),
            (
                "Pod",
                &scheduled,
                "metadata.name=q,metadata.namespace=ns",
                true,
            ),
            ("Pod", &scheduled, "metadata.name!=q", false),
            ("Node", &node, "spec.unschedulable=true", true),
            ("Node", &node, "metadata.name=n1", true),
            ("Node", &node, "metadata.namespace=", true),
            (
                "Event",
                &event,
                "involvedObject.kind=Pod,involvedObject.name=p,involvedObject.namespace=ns",
                true,
            ),
            (
                "Event",
                &event,
                "involvedObject.uid=u1,involvedObject.apiVersion=v1",
                true,
            ),
            (
                "Event",
                &event,
                "involvedObject.resourceVersion=7,involvedObject.fieldPath=spec.containers{c}",
                true,
            ),
            ("Event", &event, "reason=Scheduled,type=Normal", true),
            (
                "Event",
                &event,
                "source=default-scheduler,reportingComponent=default-scheduler",
                true,
            ),
            ("Event", &event, "type!=Normal", false),
            ("Secret", &secret, "type=Opaque", true),
            ("Namespace", &namespace, "status.phase=Active", true),
            (
                "Service",
                &service,
                "spec.clusterIP=10.96.0.1,spec.type=ClusterIP",
                true,
            ),
            ("ReplicaSet", &rs, "status.replicas=3", true),
            ("Job", &job, "status.successful=0", true),
        ];
        for (kind, obj, sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap();
            assert_eq!(s.unsupported_field(kind), None, "{kind} {sel}");
            assert_eq!(s.matches_object(kind, obj), *want, "{kind} {sel}");
        }
    }

    #[test]
    fn supported_fields_per_kind() {
        let cases = [
            ("Pod", "spec.nodeName", true),
            ("Pod", "metadata.namespace", true),
            ("Pod", "spec.containers", false),
            ("Node", "spec.unschedulable", true),
            ("Node", "spec.nodeName", false),
            ("Deployment", "metadata.name", true),
            ("Deployment", "status.replicas", false),
            ("Secret", "type", true),
            ("ConfigMap", "type", false),
            ("Event", "source", true),
        ];
        for (kind, field, want) in cases {
            assert_eq!(supported_field(kind, field), want, "{kind} {field}");
        }
        let s = FieldSelector::parse("metadata.name=a,spec.foo=b").unwrap();
        assert_eq!(s.unsupported_field("Pod"), Some("spec.foo"));
        assert_eq!(s.requires_exact_match("metadata.name"), Some("a"));
        assert_eq!(s.requires_exact_match("spec.nodeName"), None);
    }
}
