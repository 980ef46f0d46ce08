//! Rewrites that bring patterns with conditionals and "tempered dots" to the fast engine.
//!
//! Two constructs of stock filters (sshd's `Failed ... for <user> from <HOST>` lines among
//! them) otherwise need the backtracking engine, which on those lines costs tens of
//! thousands of steps:
//!
//! - **Conditionals** `(?(g)yes|no)`: the choice that decides whether group `g` takes part
//!   (an optional `X?` or an alternation around it) is expanded where it stands, with the
//!   rest of the pattern copied into each branch in the order a backtracking engine tries
//!   them, so each copy knows whether `g` matched and keeps only `yes` or `no`. Leftmost-
//!   first alternation then picks the same parse as the backtracking engine would. Capture
//!   groups get copied with their branch; the copies map back to the Python group.
//! - **Tempered dots** `(?:(?!LIT).)*`, `*?`, where `LIT` is a literal: followed by `LIT`
//!   itself it can only stop right before the first occurrence of `LIT`, and followed by
//!   `$` it must run to the end of the line without containing `LIT`; both spans are
//!   unique, so the construct becomes a plain regular expression for "text without `LIT`"
//!   (built from the string-matching automaton of `LIT`), with the same match.
//!
//! Anything else (lookarounds elsewhere, backreferences, repetitions around a decisive
//! group, case-insensitive literals in a tempered dot) leaves the pattern to the
//! backtracking engine.

use std::collections::{BTreeSet, VecDeque};

use super::pyre::{Assertion, Class, ClassItem, Node, Parsed, RepeatMode};

/// Copies of the pattern tail the expansion may make.
const BUDGET: u32 = 64;

/// A pattern flattened to a sequence, with groups as open and close marks, so that the
/// rest of the pattern after any point is explicit.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    N(Node),
    Open {
        capture: Option<usize>,
        icase: Option<bool>,
    },
    Close,
}

fn flatten_into(n: &Node, out: &mut Vec<Item>) {
    match n {
        Node::Concat(v) => v.iter().for_each(|x| flatten_into(x, out)),
        Node::Group {
            capture,
            icase,
            body,
        } => {
            out.push(Item::Open {
                capture: *capture,
                icase: *icase,
            });
            flatten_into(body, out);
            out.push(Item::Close);
        }
        Node::Empty => {}
        other => out.push(Item::N(other.clone())),
    }
}

fn flatten(n: &Node) -> Vec<Item> {
    let mut v = Vec::new();
    flatten_into(n, &mut v);
    v
}

/// A group being rebuilt: its open mark (capture, case flag) and the nodes inside so far.
type Frame = (Option<(Option<usize>, Option<bool>)>, Vec<Node>);

/// Rebuilds a node from a balanced item sequence.
fn rebuild(items: Vec<Item>) -> Option<Node> {
    let mut stack: Vec<Frame> = vec![(None, vec![])];
    for it in items {
        match it {
            Item::N(n) => stack.last_mut()?.1.push(n),
            Item::Open { capture, icase } => stack.push((Some((capture, icase)), vec![])),
            Item::Close => {
                let (open, body) = stack.pop()?;
                let (capture, icase) = open?;
                stack.last_mut()?.1.push(Node::Group {
                    capture,
                    icase,
                    body: Box::new(concat(body)),
                });
            }
        }
    }
    let (open, body) = stack.pop()?;
    (open.is_none() && stack.is_empty()).then(|| concat(body))
}

fn concat(mut v: Vec<Node>) -> Node {
    match v.len() {
        0 => Node::Empty,
        1 => v.pop().unwrap_or(Node::Empty),
        _ => Node::Concat(v),
    }
}

/// The literal and dotall flag of a tempered dot body `(?!LIT).` (in any plain groups).
fn tempered(body: &Node) -> Option<(Vec<char>, bool)> {
    let mut n = body;
    while let Node::Group {
        capture: None,
        icase: None,
        body,
    } = n
    {
        n = body;
    }
    let Node::Concat(parts) = n else {
        return None;
    };
    let [
        Node::Look {
            behind: false,
            negated: true,
            body: look,
        },
        Node::Any { dotall },
    ] = parts.as_slice()
    else {
        return None;
    };
    let lit = literal_chars(look)?;
    (!lit.is_empty() && lit.iter().all(|c| c.is_ascii() && *c != '\n')).then_some((lit, *dotall))
}

fn literal_chars(n: &Node) -> Option<Vec<char>> {
    match n {
        Node::Literal(c) => Some(vec![*c]),
        Node::Concat(v) => {
            let mut out = Vec::new();
            for x in v {
                out.extend(literal_chars(x)?);
            }
            Some(out)
        }
        Node::Group {
            capture: None,
            icase: None,
            body,
        } => literal_chars(body),
        _ => None,
    }
}

fn contains(n: &Node, pred: &impl Fn(&Node) -> bool) -> bool {
    let mut found = false;
    n.walk(&mut |x| found |= pred(x));
    found
}

/// The string-matching automaton of `lit`: the state after reading `c` in state `k`
/// (the length of the longest prefix of `lit` that ends the text read).
fn step(lit: &[char], k: usize, c: char) -> usize {
    let mut seen: Vec<char> = lit[..k].to_vec();
    seen.push(c);
    (0..=seen.len().min(lit.len()))
        .rev()
        .find(|&j| seen[seen.len() - j..] == lit[..j])
        .unwrap_or(0)
}

fn alt(a: Option<Node>, b: Node) -> Node {
    match a {
        None => b,
        Some(Node::Alternation(mut v)) => {
            v.push(b);
            Node::Alternation(v)
        }
        Some(a) => Node::Alternation(vec![a, b]),
    }
}

fn seq(parts: Vec<Node>) -> Node {
    let mut v = Vec::new();
    for p in parts {
        match p {
            Node::Empty => {}
            Node::Concat(inner) => v.extend(inner),
            // An alternation inside a sequence needs its own group.
            a @ Node::Alternation(_) => v.push(Node::Group {
                capture: None,
                icase: None,
                body: Box::new(a),
            }),
            other => v.push(other),
        }
    }
    concat(v)
}

fn star(n: Node) -> Node {
    Node::Repeat {
        body: Box::new(Node::Group {
            capture: None,
            icase: None,
            body: Box::new(n),
        }),
        min: 0,
        max: None,
        mode: RepeatMode::Greedy,
    }
}

/// The texts on which the automaton of `lit` goes from state 0 to a state in `accept`
/// without ever reading all of `lit`, over the characters `.` matches (`\n` only with
/// dotall), as a regular expression (state elimination).
// The transition table is indexed by state numbers on both sides.
#[allow(clippy::needless_range_loop)]
fn texts_without(lit: &[char], dotall: bool, accept: &[bool]) -> Node {
    let n = lit.len();
    let mut chars: Vec<char> = lit.to_vec();
    chars.sort_unstable();
    chars.dedup();
    // States 0..n of the automaton, then the start and the end state.
    let (s, e) = (n, n + 1);
    let mut r: Vec<Vec<Option<Node>>> = vec![vec![None; n + 2]; n + 2];
    r[s][0] = Some(Node::Empty);
    for (k, ok) in accept.iter().enumerate() {
        if *ok {
            r[k][e] = Some(Node::Empty);
        }
    }
    for k in 0..n {
        for t in 0..n {
            let to: Vec<char> = chars
                .iter()
                .copied()
                .filter(|&c| step(lit, k, c) == t)
                .collect();
            let mut label: Option<Node> = match to.as_slice() {
                [] => None,
                [c] => Some(Node::Literal(*c)),
                _ => Some(Node::Class(Class {
                    negated: false,
                    items: to.iter().map(|c| ClassItem::Char(*c)).collect(),
                })),
            };
            // Any other character restarts the automaton.
            if t == 0 {
                let mut items: Vec<ClassItem> = chars.iter().map(|c| ClassItem::Char(*c)).collect();
                if !dotall {
                    items.push(ClassItem::Char('\n'));
                }
                let other = Node::Class(Class {
                    negated: true,
                    items,
                });
                label = Some(alt(label, other));
            }
            if let Some(l) = label {
                let prev = r[k][t].take();
                r[k][t] = Some(alt(prev, l));
            }
        }
    }
    for k in (0..n).rev() {
        let self_loop = r[k][k].take().map(star);
        for p in (0..n + 2).filter(|&p| p != k) {
            let Some(into) = r[p][k].clone() else {
                continue;
            };
            for q in (0..n + 2).filter(|&q| q != k) {
                let Some(out) = r[k][q].clone() else {
                    continue;
                };
                let path = seq(vec![
                    into.clone(),
                    self_loop.clone().unwrap_or(Node::Empty),
                    out,
                ]);
                let prev = r[p][q].take();
                r[p][q] = Some(alt(prev, path));
            }
        }
        for p in 0..n + 2 {
            r[p][k] = None;
            r[k][p] = None;
        }
    }
    r[s][e].take().unwrap_or(Node::Empty)
}

/// States from which reading `lit` completes it only with its last character: a text
/// ending there, followed by `lit`, has its first occurrence of `lit` right there.
fn first_occurrence_states(lit: &[char]) -> Vec<bool> {
    (0..lit.len())
        .map(|k| {
            let mut st = k;
            for (j, c) in lit.iter().enumerate() {
                st = step(lit, st, *c);
                if st == lit.len() {
                    return j + 1 == lit.len();
                }
            }
            false
        })
        .collect()
}

/// The plain nodes that follow in `rest` (group marks skipped).
fn following(rest: &VecDeque<Item>) -> impl Iterator<Item = &Node> {
    rest.iter().filter_map(|i| match i {
        Item::N(n) => Some(n),
        _ => None,
    })
}

/// The tempered dot `(?:(?!LIT).)*` at the front of a sequence whose rest is `rest`,
/// rewritten when the rest makes its span unique.
fn rewrite_tempered(node: &Node, rest: &VecDeque<Item>, icase: bool) -> Option<Node> {
    let Node::Repeat {
        body,
        min: 0,
        max: None,
        mode,
    } = node
    else {
        return None;
    };
    if *mode == RepeatMode::Possessive || icase {
        return None;
    }
    let (lit, dotall) = tempered(body)?;
    // Followed by the literal itself: the text up to its first occurrence.
    let mut next = following(rest);
    if lit.iter().all(|c| next.next() == Some(&Node::Literal(*c))) {
        return Some(texts_without(&lit, dotall, &first_occurrence_states(&lit)));
    }
    // Followed by `$` and nothing else: the rest of the line, without the literal.
    let mut next = following(rest).peekable();
    let at_end =
        next.peek().is_some() && next.all(|n| matches!(n, Node::Assert(Assertion::End { .. })));
    if at_end && !dotall {
        return Some(texts_without(&lit, dotall, &vec![true; lit.len()]));
    }
    None
}

struct Ctx {
    cond: BTreeSet<usize>,
    icase: bool,
    budget: u32,
}

impl Ctx {
    /// Whether `n` holds something the expansion must make explicit.
    fn decisive(&self, n: &Node) -> bool {
        contains(n, &|x| match x {
            Node::Conditional { .. } | Node::Look { .. } => true,
            Node::Group {
                capture: Some(g), ..
            } => self.cond.contains(g),
            _ => false,
        })
    }

    /// The branches of a choice, in the order a backtracking engine tries them.
    fn branches(&self, n: &Node) -> Option<Vec<Vec<Item>>> {
        match n {
            Node::Alternation(bs) => Some(bs.iter().map(flatten).collect()),
            Node::Repeat {
                body,
                min: 0,
                max: Some(1),
                mode,
            } => match mode {
                RepeatMode::Greedy => Some(vec![flatten(body), Vec::new()]),
                RepeatMode::Lazy => Some(vec![Vec::new(), flatten(body)]),
                RepeatMode::Possessive => None,
            },
            Node::Repeat {
                body,
                min: 1,
                max: Some(1),
                mode: RepeatMode::Greedy | RepeatMode::Lazy,
            } => Some(vec![flatten(body)]),
            _ => None,
        }
    }

    /// Expands `items` (with `closed` the groups that matched before them) into a
    /// sequence without conditionals or tempered dots.
    fn expand(&mut self, items: Vec<Item>, closed_before: &BTreeSet<usize>) -> Option<Vec<Item>> {
        let mut out: Vec<Item> = Vec::new();
        let mut opens: Vec<(usize, Option<usize>, Option<bool>)> = Vec::new();
        let mut closed = closed_before.clone();
        let mut queue: VecDeque<Item> = items.into();
        while let Some(it) = queue.pop_front() {
            match it {
                Item::Open { capture, icase } => {
                    opens.push((out.len(), capture, icase));
                    out.push(Item::Open { capture, icase });
                }
                Item::Close => {
                    let (_, capture, _) = opens.pop()?;
                    if let Some(g) = capture {
                        closed.insert(g);
                    }
                    out.push(Item::Close);
                }
                Item::N(Node::Conditional { group, yes, no }) => {
                    if opens.iter().any(|(_, c, _)| *c == Some(group)) {
                        // A conditional inside its own group: not handled.
                        return None;
                    }
                    let chosen = if closed.contains(&group) { yes } else { no };
                    for x in flatten(&chosen).into_iter().rev() {
                        queue.push_front(x);
                    }
                }
                Item::N(n) => {
                    let icase = opens
                        .iter()
                        .rev()
                        .find_map(|(_, _, i)| *i)
                        .unwrap_or(self.icase);
                    if let Some(plain) = rewrite_tempered(&n, &queue, icase) {
                        out.push(Item::N(plain));
                        continue;
                    }
                    if !self.decisive(&n) {
                        out.push(Item::N(n));
                        continue;
                    }
                    let branches = self.branches(&n)?;
                    self.budget = self.budget.checked_sub(branches.len() as u32)?;
                    // The choice is made where it stands: the branches start at the
                    // outermost group still open, each with a copy of the rest.
                    let j = opens.first().map_or(out.len(), |(p, _, _)| *p);
                    let head = out.split_off(j);
                    let mut closed_at_j = closed_before.clone();
                    closed_at_j.extend(out.iter().filter_map(|i| match i {
                        Item::Open {
                            capture: Some(g), ..
                        } => Some(*g),
                        _ => None,
                    }));
                    let rest: Vec<Item> = queue.drain(..).collect();
                    let mut alts = Vec::new();
                    for b in branches {
                        let seq: Vec<Item> = head
                            .iter()
                            .cloned()
                            .chain(b)
                            .chain(rest.iter().cloned())
                            .collect();
                        let expanded = self.expand(seq, &closed_at_j)?;
                        alts.push(rebuild(expanded)?);
                    }
                    out.push(Item::N(Node::Alternation(alts)));
                    return Some(out);
                }
            }
        }
        Some(out)
    }
}

/// `parsed` without conditionals and tempered dots, or None when it has constructs these
/// rewrites do not cover (or none of them at all).
pub fn simplify(parsed: &Parsed) -> Option<Parsed> {
    let mut cond = BTreeSet::new();
    let mut any = false;
    parsed.root.walk(&mut |n| match n {
        Node::Conditional { group, .. } => {
            cond.insert(*group);
            any = true;
        }
        Node::Look { .. } => any = true,
        _ => {}
    });
    if !any {
        return None;
    }
    let mut ctx = Ctx {
        cond,
        icase: parsed.icase,
        budget: BUDGET,
    };
    let items = ctx.expand(flatten(&parsed.root), &BTreeSet::new())?;
    let root = rebuild(items)?;
    let fast = !contains(&root, &|n| {
        matches!(
            n,
            Node::Conditional { .. }
                | Node::Look { .. }
                | Node::Backref { .. }
                | Node::Atomic(_)
                | Node::Repeat {
                    mode: RepeatMode::Possessive,
                    ..
                }
        )
    });
    fast.then(|| Parsed {
        root,
        groups: parsed.groups.clone(),
        icase: parsed.icase,
    })
}

#[cfg(test)]
mod tests {
    use super::super::pyre::{StartFlags, parse};
    use super::*;

    fn lit(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn automaton_steps() {
        let l = lit(" from ");
        assert_eq!(step(&l, 0, ' '), 1);
        assert_eq!(step(&l, 1, ' '), 1);
        assert_eq!(step(&l, 2, 'x'), 0);
        assert_eq!(step(&l, 5, ' '), 6);
        assert_eq!(step(&l, 3, 'f'), 0);
        assert_eq!(step(&lit("aab"), 2, 'a'), 2);
        // After " from", reading " from " completes the literal at its first character.
        assert_eq!(
            first_occurrence_states(&l),
            vec![true, true, true, true, true, false]
        );
    }

    /// The rewritten fast form and the exact backtracking form agree on span and groups
    /// over many texts built from the pieces that make the difference.
    #[test]
    fn rewritten_patterns_agree_with_backtracking() {
        use super::super::engine::{MatchStats, PatternList};
        use super::super::translate::{Engine, TranslateOptions, translate};
        let patterns = [
            r"^Failed (?:(?P<nofail>publickey)|\S+) for (?P<cond_inv>invalid user )?(?P<user>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)) from (?P<ip>\d+\.\d+)(?: port \d+)?(?: ssh\d*)?(?(cond_user): |(?:(?:(?! from ).)*)$)",
            r"^Failed publickey for invalid user (?P<user>(?P<cond_user>\S+)|(?:(?! from ).)*?) from (?P<ip>\d+\.\d+)(?: port \d+)?(?(cond_user): |(?:(?:(?! from ).)*)$)",
            r"^a(?P<g>b+)??c(?(g)d|e)",
            r"^x(?:(?!aab).)*?aab(?P<t>.)",
            r"^x(?P<m>(?:(?!abab).)*)$",
        ];
        let sshd: &[&str] = &[
            "invalid user ",
            "root",
            "x y",
            " from ",
            "from",
            " fro",
            " 1.2",
            " from 1.2",
            " port 22",
            " ssh2",
            ": ",
            ":",
            " ",
            "\n",
            "",
            "1.2",
        ];
        let other: &[&str] = &["a", "b", "c", "d", "e", "ab", "aab", "abab", "x", " ", "\n"];
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1du64);
        for p in patterns {
            let tr = translate(p, TranslateOptions::default()).unwrap();
            assert_eq!(tr.engine, Engine::Fast, "{p}: {}", tr.reason);
            let fancy = fancy_regex::Regex::new(&tr.fancy).unwrap();
            let list = PatternList::compile(vec![tr], false, 1_000_000).unwrap();
            let (starts, pieces): (&[&str], &[&str]) = if p.starts_with("^Failed") {
                (
                    &[
                        "Failed publickey for ",
                        "Failed publickey for invalid user ",
                        "Failed password for ",
                        "Failed x",
                    ],
                    sshd,
                )
            } else {
                (&["x", "a", ""], other)
            };
            let mut matched = 0;
            for _ in 0..6000 {
                let mut text = starts[next(starts.len())].to_string();
                for _ in 0..next(8) {
                    text.push_str(pieces[next(pieces.len())]);
                }
                text.push('\n');
                let ours = list.search(text.as_bytes(), 0, &mut MatchStats::default());
                let theirs = fancy.captures(&text).unwrap();
                let theirs = theirs.map(|c| {
                    (0..c.len())
                        .map(|g| c.get(g).map(|m| (m.start(), m.end())))
                        .collect::<Vec<_>>()
                });
                assert_eq!(ours.map(|h| h.groups), theirs, "{p} on {text:?}");
                matched += usize::from(theirs.is_some());
            }
            assert!(matched > 10, "{p}: only {matched} matches");
        }
    }

    #[test]
    fn only_covered_constructs_are_simplified() {
        let p = |s: &str| parse(s, StartFlags::default()).unwrap();
        assert!(simplify(&p(r"^a(?P<g>b)?c(?(g)d|e)$")).is_some());
        assert!(simplify(&p(r"^x(?:(?! from ).)*? from y")).is_some());
        assert!(simplify(&p(r"^x(?:(?! from ).)*$")).is_some());
        // Nothing to do, lookbehind, a decisive group inside a repetition, a tempered dot
        // with no unique end, case-insensitive literal.
        assert!(simplify(&p(r"^abc")).is_none());
        assert!(simplify(&p(r"(?<=a)b")).is_none());
        assert!(simplify(&p(r"(?:(?P<g>a)b)*(?(g)c|d)")).is_none());
        assert!(simplify(&p(r"x(?:(?! from ).)*y")).is_none());
        assert!(simplify(&p(r"(?i)x(?:(?! from ).)*? from ")).is_none());
    }
}
