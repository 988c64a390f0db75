//! Mosquitto's `acl_file`: who may publish and receive on which topics.
//!
//! The format and the check follow Mosquitto 2.0 (`src/security_default.c`,
//! `aclfile__parse` and `mosquitto_acl_check_default`):
//!
//! ```text
//! # Lines before any `user` line apply to clients without a username.
//! topic read $SYS/#
//!
//! user alice
//! topic readwrite home/#
//! topic deny home/secret
//!
//! # Patterns apply to every client; %c is the client id, %u the username.
//! pattern write devices/%u/%c/status
//! ```
//!
//! * `topic [read|write|readwrite|deny] TOPIC`: the access word is optional
//!   (default `readwrite`). `TOPIC` is the rest of the line and may contain
//!   `+` and `#`.
//! * `user NAME` starts the rules of that user; a second `user NAME` section
//!   for the same name adds to the first.
//! * `pattern [read|write|readwrite|deny] TOPIC` applies to all clients, after
//!   `%c` and `%u` are replaced by the client id and username. A pattern with
//!   `%u` never applies to a client without a username.
//!
//! The check ([`AclFile::check`]): first the client's own rules (its user
//! section, or the anonymous section when it has no username), then the
//! patterns. Within each list `deny` rules come first, whatever their place in
//! the file; the first rule whose topic matches decides. Nothing matching
//! means denied. When the file has patterns, a client whose id or username
//! contains `+` or `#` is denied everything the user rules did not already
//! allow, so it cannot widen a pattern.
//!
//! Subscriptions: Mosquitto 2.0's `acl_file` check allows every SUBSCRIBE
//! (`if(ed->access == MOSQ_ACL_SUBSCRIBE ...) return MOSQ_ERR_SUCCESS`) and
//! instead checks [`Access::Read`] for each message when it is delivered. So
//! `check(.., Access::Subscribe)` returns `true`, and a broker must check
//! `Access::Read` against the concrete topic of every message it delivers.

use std::path::{Path, PathBuf};

use mqtt_codec::topic::matches;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive a message published on this topic (checked at delivery).
    Read,
    /// Publish on this topic.
    Write,
    /// Subscribe to this topic filter (always allowed by an `acl_file`, as in
    /// Mosquitto 2.0; reads are checked per message).
    Subscribe,
}

/// Access a rule grants (`deny` grants nothing and stops the search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAccess {
    /// `read`
    Read,
    /// `write`
    Write,
    /// `readwrite` (also the default when no access word is given)
    ReadWrite,
    /// `deny`
    Deny,
}

impl RuleAccess {
    fn allows(self, access: Access) -> bool {
        matches!(
            (self, access),
            (RuleAccess::Read | RuleAccess::ReadWrite, Access::Read)
                | (RuleAccess::Write | RuleAccess::ReadWrite, Access::Write)
        )
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// The access it grants.
    pub access: RuleAccess,
    /// The topic filter (for patterns, before `%c`/`%u` substitution).
    pub topic: String,
}

/// Rules that apply to one user (or to anonymous clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAcl {
    /// `None` for the rules before any `user` line (anonymous clients).
    pub username: Option<String>,
    /// Rules in check order: deny rules first, then the others in file order.
    pub rules: Vec<AclRule>,
}

/// Why an ACL file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// The file could not be read.
    #[error("cannot read acl_file {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A line is not a valid rule.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file (or the origin name given to [`AclFile::parse_str`]).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// A parsed `acl_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    users: Vec<UserAcl>,
    patterns: Vec<AclRule>,
    warnings: Vec<String>,
}

fn insert_rule(list: &mut Vec<AclRule>, rule: AclRule) {
    if rule.access == RuleAccess::Deny {
        // Mosquitto puts "deny" ACLs at the front of the list.
        list.insert(0, rule);
    } else {
        list.push(rule);
    }
}

fn valid_filter(f: &str) -> bool {
    let mut levels = f.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    !f.is_empty()
}

impl AclFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AclFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_str(&text, &path.display().to_string())
    }

    /// Parses ACL file text; `origin` names it in errors.
    pub fn parse_str(text: &str, origin: &str) -> Result<Self, AclFileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let err = |message: String| AclFileError::Parse {
                file: origin.to_owned(),
                line,
                message,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = match trimmed.split_once([' ', '\t']) {
                Some((k, r)) => (k, r.trim()),
                None => (trimmed, ""),
            };
            match keyword {
                "topic" | "pattern" => {
                    if rest.is_empty() {
                        return Err(err(format!(
                            "'{keyword}' needs a topic: '{keyword} [read|write|readwrite|deny] TOPIC'"
                        )));
                    }
                    let (access, topic) = match rest.split_once([' ', '\t']) {
                        Some((a, t)) => {
                            let access = match a {
                                "read" => RuleAccess::Read,
                                "write" => RuleAccess::Write,
                                "readwrite" => RuleAccess::ReadWrite,
                                "deny" => RuleAccess::Deny,
                                other => {
                                    return Err(err(format!(
                                        "invalid access '{other}': expected read, write, readwrite or deny"
                                    )))
                                }
                            };
                            (access, t.trim())
                        }
                        // A single word is the topic, with readwrite access.
                        None => (RuleAccess::ReadWrite, rest),
                    };
                    if !valid_filter(topic) {
                        return Err(err(format!(
                            "invalid topic '{topic}': '+' and '#' must fill a whole level and '#' must be last"
                        )));
                    }
                    let rule = AclRule {
                        access,
                        topic: topic.to_owned(),
                    };
                    if keyword == "pattern" {
                        if !topic.contains("%c") && !topic.contains("%u") {
                            acl.warnings.push(format!(
                                "{origin}:{line}: pattern '{topic}' does not contain '%c' or '%u'"
                            ));
                        }
                        insert_rule(&mut acl.patterns, rule);
                    } else {
                        let i = match acl.users.iter().position(|u| u.username == user) {
                            Some(i) => i,
                            None => {
                                acl.users.push(UserAcl {
                                    username: user.clone(),
                                    rules: Vec::new(),
                                });
                                acl.users.len() - 1
                            }
                        };
                        let entry = &mut acl.users[i];
                        insert_rule(&mut entry.rules, rule);
                    }
                }
                "user" => {
                    if rest.is_empty() {
                        return Err(err("missing username: expected 'user NAME'".into()));
                    }
                    user = Some(rest.to_owned());
                }
                other => {
                    return Err(err(format!(
                    "invalid line starting with '{other}': expected 'topic', 'pattern' or 'user'"
                )))
                }
            }
        }
        Ok(acl)
    }

    /// Whether a client may have `access` to `topic`.
    ///
    /// `topic` is a concrete topic name for [`Access::Read`] and
    /// [`Access::Write`], and a topic filter for [`Access::Subscribe`] (always
    /// allowed, see the module docs).
    pub fn check(
        &self,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        access: Access,
    ) -> bool {
        if access == Access::Subscribe {
            // Mosquitto 2.0: "FIXME - implement ACL subscription strings";
            // reads are checked per delivered message instead.
            return true;
        }
        if let Some(user) = self
            .users
            .iter()
            .find(|u| u.username.as_deref() == username)
        {
            for rule in &user.rules {
                // If the topic starts with '$', the rule must too.
                if topic.starts_with('$') && !rule.topic.starts_with('$') {
                    continue;
                }
                if matches(&rule.topic, topic) {
                    if rule.access == RuleAccess::Deny {
                        return false;
                    }
                    if rule.access.allows(access) {
                        return true;
                    }
                }
            }
        }
        if self.patterns.is_empty() {
            return false;
        }
        // A '+' or '#' in the id or username would widen every pattern.
        if username.is_some_and(|u| u.contains(['+', '#'])) || client_id.contains(['+', '#']) {
            return false;
        }
        for rule in &self.patterns {
            if rule.topic.contains("%u") && username.is_none() {
                continue;
            }
            let filter = substitute(&rule.topic, client_id, username);
            if matches(&filter, topic) {
                if rule.access == RuleAccess::Deny {
                    return false;
                }
                if rule.access.allows(access) {
                    return true;
                }
            }
        }
        false
    }

    /// The rules per user (`username: None` for anonymous clients), in file
    /// order of first appearance.
    pub fn users(&self) -> &[UserAcl] {
        &self.users
    }

    /// The `pattern` rules, in check order.
    pub fn patterns(&self) -> &[AclRule] {
        &self.patterns
    }

    /// Things worth telling the user that do not stop the file from loading
    /// (e.g. a `pattern` without `%c` or `%u`), each prefixed with file:line.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Replaces `%c` with the client id and `%u` with the username.
fn substitute(pattern: &str, client_id: &str, username: Option<&str>) -> String {
    let mut out = String::with_capacity(pattern.len() + client_id.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match (chars.peek(), username) {
                (Some('c'), _) => {
                    chars.next();
                    out.push_str(client_id);
                    continue;
                }
                (Some('u'), Some(u)) => {
                    chars.next();
                    out.push_str(u);
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}
