//! A parser for Python's `re` dialect (3.11, `str` patterns) into a small syntax tree.
//!
//! The tree keeps what the translator needs to decide which engine can run a pattern and
//! to write it out for that engine: flags are resolved onto the nodes they change (`.`
//! under DOTALL, `^`/`$` under MULTILINE, `\w` under ASCII), so no flag state has to be
//! tracked when emitting; only case-insensitivity stays a scoped group, because both Rust
//! engines scope it the same way Python does.
//!
//! Errors mirror Python's where a pattern would not compile there (bad escapes, nothing to
//! repeat, references to unknown or open groups, global flags after the start), so a
//! filter fail2ban rejects is rejected here too, with the position of the problem.

use std::fmt;

/// A parse error with the byte offset in the pattern where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyReError {
    pub message: String,
    pub offset: usize,
}

impl fmt::Display for PyReError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.offset)
    }
}

impl std::error::Error for PyReError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerlKind {
    Digit,
    Word,
    Space,
}

/// `\d`, `\w`, `\s` and their negations; `ascii` is set under the `(?a)` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perl {
    pub kind: PerlKind,
    pub negated: bool,
    pub ascii: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassItem {
    Char(char),
    Range(char, char),
    Perl(Perl),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub negated: bool,
    pub items: Vec<ClassItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assertion {
    /// `^`; with MULTILINE also after every `\n`.
    Start {
        multiline: bool,
    },
    /// `$`; without MULTILINE: at the end or before a final `\n`; with it: before every
    /// `\n` and at the end.
    End {
        multiline: bool,
    },
    /// `\A`
    StartText,
    /// `\Z`: the absolute end (Rust's `\z`).
    EndText,
    WordBoundary {
        ascii: bool,
    },
    NotWordBoundary {
        ascii: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatMode {
    Greedy,
    Lazy,
    Possessive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Empty,
    Literal(char),
    Any {
        dotall: bool,
    },
    Class(Class),
    Perl(Perl),
    Assert(Assertion),
    /// A capturing group (`index` ≥ 1), a plain group, or a scoped flag group; `icase`
    /// is `Some` when the group switches case-insensitivity.
    Group {
        capture: Option<usize>,
        icase: Option<bool>,
        body: Box<Node>,
    },
    Look {
        behind: bool,
        negated: bool,
        body: Box<Node>,
    },
    Atomic(Box<Node>),
    /// A reference to group `group`; `icase` is the case-insensitivity at the reference.
    Backref {
        group: usize,
        icase: bool,
    },
    Conditional {
        group: usize,
        yes: Box<Node>,
        no: Box<Node>,
    },
    Repeat {
        body: Box<Node>,
        min: u32,
        max: Option<u32>,
        mode: RepeatMode,
    },
    Concat(Vec<Node>),
    Alternation(Vec<Node>),
}

/// A capturing group of the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: Option<String>,
    /// Case-insensitivity in force where the group was defined.
    pub icase: bool,
    /// The group's body, kept to approximate backreferences to it.
    pub body: Node,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub root: Node,
    /// Capturing groups by index; entry 0 stands for the whole match and is unnamed.
    pub groups: Vec<GroupInfo>,
    /// A global `(?i)` at the start.
    pub icase: bool,
}

/// Flags a pattern starts with (fail2ban compiles multi-line failregexes with MULTILINE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartFlags {
    pub multiline: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    icase: bool,
    multiline: bool,
    dotall: bool,
    verbose: bool,
    ascii: bool,
}

/// Python's MAXREPEAT on 64-bit builds.
const MAX_REPEAT: u64 = u32::MAX as u64;

pub fn parse(pattern: &str, start: StartFlags) -> Result<Parsed, PyReError> {
    let mut p = Parser {
        chars: pattern.char_indices().collect(),
        len: pattern.len(),
        pos: 0,
        groups: vec![GroupInfo {
            name: None,
            icase: false,
            body: Node::Empty,
        }],
        open: Vec::new(),
        forward_refs: Vec::new(),
        global: Flags {
            multiline: start.multiline,
            ..Flags::default()
        },
    };
    // Global flags can only appear before anything else; Python then applies them to the
    // whole pattern, which is the same as applying them from here on.
    let root = p.parse_alternation(None, 0, true)?;
    if p.pos < p.chars.len() {
        // Only a stray ')' stops the top level early.
        return Err(p.error("unbalanced parenthesis", p.offset()));
    }
    if let Some(&(n, off)) = p.forward_refs.iter().find(|(n, _)| *n >= p.groups.len()) {
        return Err(p.error(format!("invalid group reference {n}"), off));
    }
    Ok(Parsed {
        root,
        groups: p.groups,
        icase: p.global.icase,
    })
}

struct Parser {
    chars: Vec<(usize, char)>,
    len: usize,
    pos: usize,
    groups: Vec<GroupInfo>,
    /// Groups still open (references to them are errors).
    open: Vec<usize>,
    /// Numbered conditions, checked against the group count at the end.
    forward_refs: Vec<(usize, usize)>,
    global: Flags,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn offset(&self) -> usize {
        self.chars
            .get(self.pos)
            .map(|&(o, _)| o)
            .unwrap_or(self.len)
    }
    fn offset_of(&self, pos: usize) -> usize {
        self.chars.get(pos).map(|&(o, _)| o).unwrap_or(self.len)
    }
    fn error(&self, message: impl Into<String>, offset: usize) -> PyReError {
        PyReError {
            message: message.into(),
            offset,
        }
    }

    /// The flags in force: the globals, overridden by the scoped ones passed down.
    fn flags(&self, scoped: Option<Flags>) -> Flags {
        scoped.unwrap_or(self.global)
    }

    fn parse_alternation(
        &mut self,
        scoped: Option<Flags>,
        depth: usize,
        top: bool,
    ) -> Result<Node, PyReError> {
        if depth > 200 {
            return Err(self.error("too many nested groups", self.offset()));
        }
        let mut branches = vec![self.parse_sequence(scoped, depth, top)?];
        while self.eat('|') {
            branches.push(self.parse_sequence(scoped, depth, false)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alternation(branches)
        })
    }

    fn skip_verbose(&mut self, flags: Flags) {
        if !flags.verbose {
            return;
        }
        loop {
            match self.peek() {
                Some(c) if " \t\n\r\x0b\x0c".contains(c) => self.pos += 1,
                Some('#') => {
                    while let Some(c) = self.next() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn parse_sequence(
        &mut self,
        scoped: Option<Flags>,
        depth: usize,
        first: bool,
    ) -> Result<Node, PyReError> {
        let mut items: Vec<Node> = Vec::new();
        loop {
            let flags = self.flags(scoped);
            self.skip_verbose(flags);
            let Some(c) = self.peek() else { break };
            if c == '|' || c == ')' {
                break;
            }
            let here = self.pos;
            self.pos += 1;
            match c {
                '*' | '+' | '?' => {
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.apply_repeat(&mut items, min, max, here)?;
                }
                '{' => {
                    if let Some((min, max)) = self.parse_braces()? {
                        self.apply_repeat(&mut items, min, max, here)?;
                    } else {
                        items.push(Node::Literal('{'));
                    }
                }
                '.' => items.push(Node::Any {
                    dotall: flags.dotall,
                }),
                '^' => items.push(Node::Assert(Assertion::Start {
                    multiline: flags.multiline,
                })),
                '$' => items.push(Node::Assert(Assertion::End {
                    multiline: flags.multiline,
                })),
                '[' => {
                    let class = self.parse_class(flags, here)?;
                    items.push(class);
                }
                '\\' => {
                    let node = self.parse_escape(flags, here)?;
                    items.push(node);
                }
                '(' => match self.parse_group(scoped, depth, here, first && items.is_empty())? {
                    GroupOutcome::Node(n) => items.push(n),
                    GroupOutcome::GlobalFlags | GroupOutcome::Nothing => {}
                },
                _ => items.push(Node::Literal(c)),
            }
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    /// `{m}`, `{m,}`, `{,n}`, `{m,n}`, `{,}`; `None` when the brace is a literal.
    fn parse_braces(&mut self) -> Result<Option<(u32, Option<u32>)>, PyReError> {
        let start = self.pos;
        if self.peek() == Some('}') {
            return Ok(None);
        }
        let mut lo = String::new();
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            lo.push(c);
            self.pos += 1;
        }
        let hi = if self.eat(',') {
            let mut hi = String::new();
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                hi.push(c);
                self.pos += 1;
            }
            hi
        } else {
            lo.clone()
        };
        if !self.eat('}') {
            self.pos = start;
            return Ok(None);
        }
        let number = |s: &str, p: &Parser| -> Result<u64, PyReError> {
            match s.parse::<u64>() {
                Ok(n) if n < MAX_REPEAT => Ok(n),
                _ => Err(p.error("the repetition number is too large", p.offset_of(start))),
            }
        };
        let min = if lo.is_empty() { 0 } else { number(&lo, self)? };
        let max = if hi.is_empty() {
            None
        } else {
            let m = number(&hi, self)?;
            if m < min {
                return Err(self.error("min repeat greater than max repeat", self.offset_of(start)));
            }
            Some(m)
        };
        Ok(Some((min as u32, max.map(|m| m as u32))))
    }

    fn apply_repeat(
        &mut self,
        items: &mut Vec<Node>,
        min: u32,
        max: Option<u32>,
        here: usize,
    ) -> Result<(), PyReError> {
        let off = self.offset_of(here);
        let last = match items.pop() {
            None => return Err(self.error("nothing to repeat", off)),
            Some(Node::Assert(a)) => {
                let _ = a;
                return Err(self.error("nothing to repeat", off));
            }
            Some(n @ Node::Repeat { .. }) => {
                let _ = n;
                return Err(self.error("multiple repeat", off));
            }
            Some(n) => n,
        };
        let mode = if self.eat('?') {
            RepeatMode::Lazy
        } else if self.eat('+') {
            RepeatMode::Possessive
        } else {
            RepeatMode::Greedy
        };
        items.push(Node::Repeat {
            body: Box::new(last),
            min,
            max,
            mode,
        });
        Ok(())
    }

    fn parse_group(
        &mut self,
        scoped: Option<Flags>,
        depth: usize,
        here: usize,
        at_start: bool,
    ) -> Result<GroupOutcome, PyReError> {
        let start_off = self.offset_of(here);
        let flags = self.flags(scoped);
        let mut capture_name: Option<String> = None;
        let mut capture = true;
        let mut inner_flags = scoped;
        let mut icase: Option<bool> = None;
        let mut atomic = false;
        if self.eat('?') {
            let Some(c) = self.next() else {
                return Err(self.error("unexpected end of pattern", self.offset()));
            };
            match c {
                'P' => {
                    if self.eat('<') {
                        let name = self.read_until('>', "group name")?;
                        self.check_group_name(&name)?;
                        capture_name = Some(name);
                    } else if self.eat('=') {
                        let name_off = self.offset();
                        let name = self.read_until(')', "group name")?;
                        self.check_group_name(&name)?;
                        let Some(gid) = self.group_by_name(&name) else {
                            return Err(
                                self.error(format!("unknown group name '{name}'"), name_off)
                            );
                        };
                        if self.open.contains(&gid) {
                            return Err(self.error("cannot refer to an open group", name_off));
                        }
                        return Ok(GroupOutcome::Node(Node::Backref {
                            group: gid,
                            icase: flags.icase,
                        }));
                    } else {
                        let c = self.next();
                        return Err(self.error(
                            match c {
                                Some(c) => format!("unknown extension ?P{c}"),
                                None => "unexpected end of pattern".to_string(),
                            },
                            start_off,
                        ));
                    }
                }
                ':' => capture = false,
                '#' => {
                    loop {
                        match self.next() {
                            None => {
                                return Err(
                                    self.error("missing ), unterminated comment", start_off)
                                );
                            }
                            Some(')') => break,
                            Some(_) => {}
                        }
                    }
                    return Ok(GroupOutcome::Nothing);
                }
                '=' | '!' | '<' => {
                    let (behind, negated) = if c == '<' {
                        match self.next() {
                            Some('=') => (true, false),
                            Some('!') => (true, true),
                            Some(o) => {
                                return Err(
                                    self.error(format!("unknown extension ?<{o}"), start_off)
                                );
                            }
                            None => {
                                return Err(self.error("unexpected end of pattern", self.offset()));
                            }
                        }
                    } else {
                        (false, c == '!')
                    };
                    let body = self.parse_alternation(scoped, depth + 1, false)?;
                    if !self.eat(')') {
                        return Err(self.error("missing ), unterminated subpattern", start_off));
                    }
                    return Ok(GroupOutcome::Node(Node::Look {
                        behind,
                        negated,
                        body: Box::new(body),
                    }));
                }
                '(' => {
                    let name_off = self.offset();
                    let cond = self.read_until(')', "group name")?;
                    let group = if cond.chars().all(|c| c.is_ascii_digit()) && !cond.is_empty() {
                        let n: usize = cond.parse().map_err(|_| {
                            self.error(format!("invalid group reference {cond}"), name_off)
                        })?;
                        if n == 0 {
                            return Err(self.error("bad group number", name_off));
                        }
                        // Python allows numbered conditions on groups defined later and
                        // checks them once the whole pattern is read.
                        self.forward_refs.push((n, name_off));
                        n
                    } else {
                        self.check_group_name(&cond)?;
                        self.group_by_name(&cond).ok_or_else(|| {
                            self.error(format!("unknown group name '{cond}'"), name_off)
                        })?
                    };
                    let yes = self.parse_sequence(scoped, depth + 1, false)?;
                    let no = if self.eat('|') {
                        let no = self.parse_sequence(scoped, depth + 1, false)?;
                        if self.peek() == Some('|') {
                            return Err(self.error(
                                "conditional backref with more than two branches",
                                self.offset(),
                            ));
                        }
                        no
                    } else {
                        Node::Empty
                    };
                    if !self.eat(')') {
                        return Err(self.error("missing ), unterminated subpattern", start_off));
                    }
                    return Ok(GroupOutcome::Node(Node::Conditional {
                        group,
                        yes: Box::new(yes),
                        no: Box::new(no),
                    }));
                }
                '>' => {
                    capture = false;
                    atomic = true;
                }
                c if "aiLmsux-".contains(c) => {
                    self.pos -= 1;
                    match self.parse_flags(start_off)? {
                        FlagSpec::Global(add) => {
                            if !at_start {
                                return Err(self.error(
                                    "global flags not at the start of the expression",
                                    start_off,
                                ));
                            }
                            let g = &mut self.global;
                            g.icase |= add.icase;
                            g.multiline |= add.multiline;
                            g.dotall |= add.dotall;
                            g.verbose |= add.verbose;
                            g.ascii |= add.ascii;
                            return Ok(GroupOutcome::GlobalFlags);
                        }
                        FlagSpec::Scoped { on, off } => {
                            capture = false;
                            let mut f = flags;
                            if on.icase {
                                f.icase = true;
                                icase = Some(true);
                            }
                            if off.icase {
                                f.icase = false;
                                icase = Some(false);
                            }
                            f.multiline = (f.multiline || on.multiline) && !off.multiline;
                            f.dotall = (f.dotall || on.dotall) && !off.dotall;
                            f.verbose = (f.verbose || on.verbose) && !off.verbose;
                            f.ascii |= on.ascii;
                            inner_flags = Some(f);
                        }
                    }
                }
                other => {
                    return Err(self.error(format!("unknown extension ?{other}"), start_off));
                }
            }
        }
        let index = if capture {
            if let Some(name) = &capture_name
                && self.group_by_name(name).is_some()
            {
                return Err(self.error(format!("redefinition of group name '{name}'"), start_off));
            }
            let idx = self.groups.len();
            self.groups.push(GroupInfo {
                name: capture_name,
                icase: flags.icase,
                body: Node::Empty,
            });
            self.open.push(idx);
            Some(idx)
        } else {
            None
        };
        let body = self.parse_alternation(inner_flags, depth + 1, false)?;
        if !self.eat(')') {
            return Err(self.error("missing ), unterminated subpattern", start_off));
        }
        if let Some(idx) = index {
            self.open.retain(|&o| o != idx);
            self.groups[idx].body = body.clone();
        }
        if atomic {
            return Ok(GroupOutcome::Node(Node::Atomic(Box::new(body))));
        }
        Ok(GroupOutcome::Node(Node::Group {
            capture: index,
            icase,
            body: Box::new(body),
        }))
    }

    fn parse_flags(&mut self, start_off: usize) -> Result<FlagSpec, PyReError> {
        let mut on = Flags::default();
        let mut off = Flags::default();
        let mut type_flag: Option<char> = None;
        let set = |f: &mut Flags, c: char| match c {
            'i' => f.icase = true,
            'm' => f.multiline = true,
            's' => f.dotall = true,
            'x' => f.verbose = true,
            'a' => f.ascii = true,
            _ => {}
        };
        let mut c = self.next().unwrap_or(')');
        if c != '-' {
            loop {
                if c == 'L' {
                    return Err(self.error(
                        "bad inline flags: cannot use 'L' flag with a str pattern",
                        start_off,
                    ));
                }
                if c == 'a' || c == 'u' {
                    if type_flag.is_some_and(|t| t != c) {
                        return Err(self.error(
                            "bad inline flags: flags 'a', 'u' and 'L' are incompatible",
                            start_off,
                        ));
                    }
                    type_flag = Some(c);
                }
                set(&mut on, c);
                match self.next() {
                    None => return Err(self.error("missing -, : or )", self.offset())),
                    Some(n) if n == ')' || n == '-' || n == ':' => {
                        c = n;
                        break;
                    }
                    Some(n) if "aiLmsux".contains(n) => c = n,
                    Some(n) => {
                        return Err(self.error(
                            if n.is_alphabetic() {
                                "unknown flag"
                            } else {
                                "missing -, : or )"
                            },
                            self.offset(),
                        ));
                    }
                }
            }
        }
        if c == ')' {
            return Ok(FlagSpec::Global(on));
        }
        if c == '-' {
            let mut c2 = match self.next() {
                Some(n) if "aiLmsux".contains(n) => n,
                Some(n) if n.is_alphabetic() => {
                    return Err(self.error("unknown flag", self.offset()));
                }
                _ => return Err(self.error("missing flag", self.offset())),
            };
            loop {
                if "aLu".contains(c2) {
                    return Err(self.error(
                        "bad inline flags: cannot turn off flags 'a', 'u' and 'L'",
                        start_off,
                    ));
                }
                set(&mut off, c2);
                match self.next() {
                    None => return Err(self.error("missing :", self.offset())),
                    Some(':') => break,
                    Some(n) if "aiLmsux".contains(n) => c2 = n,
                    Some(n) => {
                        return Err(self.error(
                            if n.is_alphabetic() {
                                "unknown flag"
                            } else {
                                "missing :"
                            },
                            self.offset(),
                        ));
                    }
                }
            }
        }
        if (on.icase && off.icase)
            || (on.multiline && off.multiline)
            || (on.dotall && off.dotall)
            || (on.verbose && off.verbose)
        {
            return Err(self.error("bad inline flags: flag turned on and off", start_off));
        }
        Ok(FlagSpec::Scoped { on, off })
    }

    fn read_until(&mut self, end: char, what: &str) -> Result<String, PyReError> {
        let start = self.offset();
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err(self.error(format!("missing {end}, unterminated name"), start)),
                Some(c) if c == end => break,
                Some(c) => s.push(c),
            }
        }
        if s.is_empty() {
            return Err(self.error(format!("missing {what}"), start));
        }
        Ok(s)
    }

    /// Python requires identifiers; names that fail2ban tags produce may also contain `-`.
    fn check_group_name(&self, name: &str) -> Result<(), PyReError> {
        let mut chars = name.chars();
        let ok = match chars.next() {
            Some(c) if c.is_alphabetic() || c == '_' => {
                chars.all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.error(
                format!("bad character in group name '{name}'"),
                self.offset(),
            ))
        }
    }

    fn group_by_name(&self, name: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.name.as_deref() == Some(name))
    }

    fn parse_class(&mut self, flags: Flags, here: usize) -> Result<Node, PyReError> {
        let start_off = self.offset_of(here);
        let negated = self.eat('^');
        let body_start = self.pos;
        let mut items = Vec::new();
        loop {
            let Some(c) = self.next() else {
                return Err(self.error("unterminated character set", start_off));
            };
            if c == ']' && self.pos - 1 != body_start {
                break;
            }
            let first = if c == '\\' {
                self.class_escape(flags)?
            } else {
                ClassItem::Char(c)
            };
            if self.peek() == Some('-') {
                self.pos += 1;
                let Some(that) = self.next() else {
                    return Err(self.error("unterminated character set", start_off));
                };
                if that == ']' {
                    items.push(first);
                    items.push(ClassItem::Char('-'));
                    break;
                }
                let second = if that == '\\' {
                    self.class_escape(flags)?
                } else {
                    ClassItem::Char(that)
                };
                match (first, second) {
                    (ClassItem::Char(lo), ClassItem::Char(hi)) if lo <= hi => {
                        items.push(ClassItem::Range(lo, hi))
                    }
                    _ => return Err(self.error("bad character range", start_off)),
                }
            } else {
                items.push(first);
            }
        }
        Ok(Node::Class(Class { negated, items }))
    }

    fn class_escape(&mut self, flags: Flags) -> Result<ClassItem, PyReError> {
        let off = self.offset();
        let Some(c) = self.next() else {
            return Err(self.error("bad escape (end of pattern)", off));
        };
        if let Some(kind) = perl_kind(c) {
            return Ok(ClassItem::Perl(Perl {
                kind,
                negated: c.is_ascii_uppercase(),
                ascii: flags.ascii,
            }));
        }
        if c == 'b' {
            return Ok(ClassItem::Char('\x08'));
        }
        if let Some(ch) = simple_escape(c) {
            return Ok(ClassItem::Char(ch));
        }
        match c {
            'x' | 'u' | 'U' => Ok(ClassItem::Char(self.hex_escape(c, off)?)),
            'N' => Err(self.error("named Unicode escapes \\N{...} are not supported", off)),
            '0'..='7' => {
                let mut v = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                if v > 0o377 {
                    return Err(self.error(
                        format!("octal escape value \\{v:o} outside of range 0-0o377"),
                        off,
                    ));
                }
                Ok(ClassItem::Char(char::from_u32(v).unwrap_or('\0')))
            }
            c if c.is_ascii_alphanumeric() => Err(self.error(format!("bad escape \\{c}"), off)),
            c => Ok(ClassItem::Char(c)),
        }
    }

    fn hex_escape(&mut self, kind: char, off: usize) -> Result<char, PyReError> {
        let n = match kind {
            'x' => 2,
            'u' => 4,
            _ => 8,
        };
        let mut v: u32 = 0;
        for _ in 0..n {
            match self.peek().and_then(|d| d.to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.pos += 1;
                }
                None => return Err(self.error(format!("incomplete escape \\{kind}"), off)),
            }
        }
        char::from_u32(v).ok_or_else(|| self.error(format!("bad escape \\{kind}"), off))
    }

    fn parse_escape(&mut self, flags: Flags, here: usize) -> Result<Node, PyReError> {
        let off = self.offset_of(here);
        let Some(c) = self.next() else {
            return Err(self.error("bad escape (end of pattern)", off));
        };
        if let Some(kind) = perl_kind(c) {
            return Ok(Node::Perl(Perl {
                kind,
                negated: c.is_ascii_uppercase(),
                ascii: flags.ascii,
            }));
        }
        match c {
            'A' => return Ok(Node::Assert(Assertion::StartText)),
            'Z' => return Ok(Node::Assert(Assertion::EndText)),
            'b' => {
                return Ok(Node::Assert(Assertion::WordBoundary { ascii: flags.ascii }));
            }
            'B' => {
                return Ok(Node::Assert(Assertion::NotWordBoundary {
                    ascii: flags.ascii,
                }));
            }
            _ => {}
        }
        if let Some(ch) = simple_escape(c) {
            return Ok(Node::Literal(ch));
        }
        match c {
            'x' | 'u' | 'U' => Ok(Node::Literal(self.hex_escape(c, off)?)),
            'N' => Err(self.error("named Unicode escapes \\N{...} are not supported", off)),
            '0' => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                Ok(Node::Literal(char::from_u32(v).unwrap_or('\0')))
            }
            '1'..='9' => {
                let mut digits = String::from(c);
                if let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    digits.push(d);
                    self.pos += 1;
                    let octal = |x: char| ('0'..='7').contains(&x);
                    if octal(c) && octal(d) && self.peek().is_some_and(octal) {
                        let e = self.next().unwrap_or('0');
                        digits.push(e);
                        let v = u32::from_str_radix(&digits, 8).unwrap_or(0);
                        if v > 0o377 {
                            return Err(self.error(
                                format!("octal escape value \\{digits} outside of range 0-0o377"),
                                off,
                            ));
                        }
                        return Ok(Node::Literal(char::from_u32(v).unwrap_or('\0')));
                    }
                }
                let group: usize = digits.parse().unwrap_or(usize::MAX);
                if group < self.groups.len() {
                    if self.open.contains(&group) {
                        return Err(self.error("cannot refer to an open group", off));
                    }
                    Ok(Node::Backref {
                        group,
                        icase: flags.icase,
                    })
                } else {
                    Err(self.error(format!("invalid group reference {group}"), off))
                }
            }
            c if c.is_ascii_alphanumeric() => Err(self.error(format!("bad escape \\{c}"), off)),
            c => Ok(Node::Literal(c)),
        }
    }
}

enum GroupOutcome {
    Node(Node),
    GlobalFlags,
    Nothing,
}

enum FlagSpec {
    Global(Flags),
    Scoped { on: Flags, off: Flags },
}

fn perl_kind(c: char) -> Option<PerlKind> {
    match c {
        'd' | 'D' => Some(PerlKind::Digit),
        'w' | 'W' => Some(PerlKind::Word),
        's' | 'S' => Some(PerlKind::Space),
        _ => None,
    }
}

fn simple_escape(c: char) -> Option<char> {
    Some(match c {
        'a' => '\x07',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        '\\' => '\\',
        _ => return None,
    })
}

impl Node {
    /// Visits this node and every node below it, backreference targets excluded.
    pub fn walk(&self, f: &mut impl FnMut(&Node)) {
        f(self);
        match self {
            Node::Group { body, .. }
            | Node::Look { body, .. }
            | Node::Atomic(body)
            | Node::Repeat { body, .. } => body.walk(f),
            Node::Conditional { yes, no, .. } => {
                yes.walk(f);
                no.walk(f);
            }
            Node::Concat(v) | Node::Alternation(v) => v.iter().for_each(|n| n.walk(f)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Parsed, PyReError> {
        parse(s, StartFlags::default())
    }

    #[test]
    fn literals_and_escapes() {
        let r = p(r"a\.\x41\u00e9\101\0\n\'").unwrap();
        assert_eq!(
            r.root,
            Node::Concat(vec![
                Node::Literal('a'),
                Node::Literal('.'),
                Node::Literal('A'),
                Node::Literal('é'),
                Node::Literal('A'),
                Node::Literal('\0'),
                Node::Literal('\n'),
                Node::Literal('\''),
            ])
        );
    }

    #[test]
    fn python_errors_are_mirrored() {
        for (pat, msg) in [
            ("*a", "nothing to repeat"),
            ("a**", "multiple repeat"),
            ("^*", "nothing to repeat"),
            (r"\q", "bad escape"),
            (r"(a)\2", "invalid group reference"),
            (r"(a\1)", "cannot refer to an open group"),
            ("(?P<x>a)(?P<x>b)", "redefinition"),
            ("(?P=y)", "unknown group name"),
            ("a(?i)b", "global flags not at the start"),
            ("a|(?i)b", "global flags not at the start"),
            ("(a", "missing ), unterminated subpattern"),
            ("a)", "unbalanced parenthesis"),
            ("[a", "unterminated character set"),
            (r"[z-a]", "bad character range"),
            (r"[\d-z]", "bad character range"),
            ("a{3,2}", "min repeat greater than max repeat"),
            ("(?<n>a)", "unknown extension"),
            ("(?L)a", "'L' flag"),
            (r"\x4", "incomplete escape"),
            ("(?(1)a|b|c)(x)", "more than two branches"),
            ("(?(2)a|b)(x)", "invalid group reference 2"),
        ] {
            let e = p(pat).expect_err(pat);
            assert!(e.message.contains(msg), "{pat}: {e}");
        }
    }

    #[test]
    fn braces_that_are_not_quantifiers_are_literals() {
        assert_eq!(
            p("a{").unwrap().root,
            Node::Concat(vec![Node::Literal('a'), Node::Literal('{')])
        );
        assert_eq!(
            p("{}").unwrap().root,
            Node::Concat(vec![Node::Literal('{'), Node::Literal('}')])
        );
        assert_eq!(
            p("x{a}").unwrap().root,
            Node::Concat(vec![
                Node::Literal('x'),
                Node::Literal('{'),
                Node::Literal('a'),
                Node::Literal('}')
            ])
        );
        let Node::Repeat { min, max, .. } = p("x{,3}").unwrap().root else {
            panic!()
        };
        assert_eq!((min, max), (0, Some(3)));
        let Node::Repeat { min, max, .. } = p("x{2,}").unwrap().root else {
            panic!()
        };
        assert_eq!((min, max), (2, None));
    }

    #[test]
    fn quantifier_modes() {
        for (pat, mode) in [
            ("a*", RepeatMode::Greedy),
            ("a*?", RepeatMode::Lazy),
            ("a*+", RepeatMode::Possessive),
            ("a{1,2}+", RepeatMode::Possessive),
        ] {
            let Node::Repeat { mode: m, .. } = p(pat).unwrap().root else {
                panic!()
            };
            assert_eq!(m, mode, "{pat}");
        }
    }

    #[test]
    fn classes() {
        let r = p(r"[]a-c\d\b-]").unwrap();
        assert_eq!(
            r.root,
            Node::Class(Class {
                negated: false,
                items: vec![
                    ClassItem::Char(']'),
                    ClassItem::Range('a', 'c'),
                    ClassItem::Perl(Perl {
                        kind: PerlKind::Digit,
                        negated: false,
                        ascii: false
                    }),
                    ClassItem::Char('\x08'),
                    ClassItem::Char('-'),
                ]
            })
        );
        let r = p(r"[^]]").unwrap();
        assert_eq!(
            r.root,
            Node::Class(Class {
                negated: true,
                items: vec![ClassItem::Char(']')]
            })
        );
    }

    #[test]
    fn flags_resolve_onto_nodes() {
        let r = p("(?s).(?-s:.)").unwrap();
        let Node::Concat(v) = r.root else { panic!() };
        assert_eq!(v[0], Node::Any { dotall: true });
        let Node::Group { body, .. } = &v[1] else {
            panic!()
        };
        assert_eq!(**body, Node::Any { dotall: false });
        let r = parse("^$", StartFlags { multiline: true }).unwrap();
        assert_eq!(
            r.root,
            Node::Concat(vec![
                Node::Assert(Assertion::Start { multiline: true }),
                Node::Assert(Assertion::End { multiline: true })
            ])
        );
        assert!(p("(?i)a").unwrap().icase);
        let r = p("(?i:a)").unwrap();
        assert!(matches!(
            r.root,
            Node::Group {
                icase: Some(true),
                capture: None,
                ..
            }
        ));
        // Verbose: whitespace and comments vanish, classes keep them.
        let r = p("(?x) a b # c\n [ ]").unwrap();
        assert_eq!(
            r.root,
            Node::Concat(vec![
                Node::Literal('a'),
                Node::Literal('b'),
                Node::Class(Class {
                    negated: false,
                    items: vec![ClassItem::Char(' ')]
                })
            ])
        );
    }

    #[test]
    fn groups_backrefs_conditionals() {
        let r = p(r"(?P<a>x)(y)(?P=a)\2(?(a)b|c)(?(2)d)").unwrap();
        assert_eq!(r.groups.len(), 3);
        assert_eq!(r.groups[1].name.as_deref(), Some("a"));
        assert_eq!(r.groups[1].body, Node::Literal('x'));
        assert_eq!(r.groups[2].name, None);
        let Node::Concat(v) = r.root else { panic!() };
        assert_eq!(
            v[2],
            Node::Backref {
                group: 1,
                icase: false
            }
        );
        assert_eq!(
            v[3],
            Node::Backref {
                group: 2,
                icase: false
            }
        );
        assert!(matches!(v[4], Node::Conditional { group: 1, .. }));
        assert!(matches!(v[5], Node::Conditional { group: 2, .. }));
        assert!(p("(?P<my-field>x)").is_ok());
        assert!(p("(?P<1a>x)").is_err());
        assert!(p("(?#comment)a").is_ok());
        assert!(matches!(p("(?>a)").unwrap().root, Node::Atomic(_)));
        assert!(matches!(
            p("(?<!a)").unwrap().root,
            Node::Look {
                behind: true,
                negated: true,
                ..
            }
        ));
    }
}
