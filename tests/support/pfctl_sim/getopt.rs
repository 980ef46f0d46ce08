//! BSD `getopt(3)`: no argument permutation, combined flags (`-vvsT`), attached or detached
//! option arguments, `--` ends the options and a lone `-` is an operand.

/// What went wrong with one option letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptError {
    /// The letter is not in the option string.
    Unknown(char),
    /// The letter needs an argument and none is left.
    MissingArgument(char),
}

/// A scanner over the arguments that follow the program name.
pub struct Getopt<'a> {
    args: &'a [String],
    optstring: &'a str,
    optind: usize,
    /// Byte offset of the next letter inside `args[optind]`; 0 when a new word starts.
    place: usize,
    done: bool,
}

impl<'a> Getopt<'a> {
    pub fn new(args: &'a [String], optstring: &'a str) -> Self {
        Getopt {
            args,
            optstring,
            optind: 0,
            place: 0,
            done: false,
        }
    }

    /// Index of the first operand once `next` has returned `None`.
    pub fn optind(&self) -> usize {
        self.optind
    }

    fn wants_argument(&self, c: char) -> Option<bool> {
        if c == ':' {
            return None;
        }
        let pos = self.optstring.find(c)?;
        Some(self.optstring[pos + c.len_utf8()..].starts_with(':'))
    }

    /// The next option letter with its argument, or `None` at the first operand.
    pub fn next_opt(&mut self) -> Option<Result<(char, Option<String>), GetoptError>> {
        if self.done {
            return None;
        }
        if self.place == 0 {
            let Some(word) = self.args.get(self.optind) else {
                self.done = true;
                return None;
            };
            if !word.starts_with('-') || word == "-" {
                self.done = true;
                return None;
            }
            if word == "--" {
                self.optind += 1;
                self.done = true;
                return None;
            }
            self.place = 1;
        }
        let word = &self.args[self.optind];
        let c = word[self.place..]
            .chars()
            .next()
            .expect("place points at a letter");
        self.place += c.len_utf8();
        let at_end = self.place >= word.len();
        match self.wants_argument(c) {
            None => {
                if at_end {
                    self.optind += 1;
                    self.place = 0;
                }
                Some(Err(GetoptError::Unknown(c)))
            }
            Some(false) => {
                if at_end {
                    self.optind += 1;
                    self.place = 0;
                }
                Some(Ok((c, None)))
            }
            Some(true) => {
                let arg = if !at_end {
                    word[self.place..].to_string()
                } else if self.optind + 1 < self.args.len() {
                    self.optind += 1;
                    self.args[self.optind].clone()
                } else {
                    self.optind += 1;
                    self.place = 0;
                    return Some(Err(GetoptError::MissingArgument(c)));
                };
                self.optind += 1;
                self.place = 0;
                Some(Ok((c, Some(arg))))
            }
        }
    }
}
