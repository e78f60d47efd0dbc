//! Accounts created in bulk inside the running Prosody.
//!
//! `prosodyctl register` costs a Lua process start (~0.3 s) per account; a load test needs
//! a thousand. One admin-shell chunk calls Prosody's own `usermanager.create_user` for a
//! whole batch instead: its PBKDF2 runs in OpenSSL's C, far faster than a debug build of
//! a Rust implementation, and the stored format stays Prosody's business.

use crate::ServerError;
use crate::admin::lua_string;

/// PBKDF2 rounds for new accounts (`default_iteration_count`): RFC 5802's minimum, since
/// every meter of a load test pays them again on each login (Prosody's default is 10 000).
pub(crate) const SCRAM_ITERATIONS: u32 = 4096;

/// Accounts per admin-shell chunk, well under the admin stream's 1 MiB stanza limit.
pub(crate) const BATCH: usize = 2000;

/// Rejects names Prosody would rewrite (nodeprep), so the JID we return is the one that
/// logs in; the same rule serves room names.
pub(crate) fn check_localpart(name: &str) -> Result<(), ServerError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServerError::InvalidAccount(format!(
            "name {name:?} must be 1-64 characters of a-z, 0-9, '.', '_', '-'"
        )))
    }
}

/// Rejects passwords that SASLprep could change, which clients and server may treat differently.
pub(crate) fn check_password(user: &str, password: &str) -> Result<(), ServerError> {
    if !password.is_empty() && password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(ServerError::InvalidAccount(format!(
            "password of {user:?} must be non-empty printable ASCII"
        )))
    }
}

/// The Lua chunk that creates (or resets the password of) `accounts` on `host`.
pub(crate) fn create_lua(host: &str, accounts: &[(String, String)]) -> Result<String, ServerError> {
    let mut entries = String::with_capacity(accounts.len() * 48);
    for (user, password) in accounts {
        check_localpart(user)?;
        check_password(user, password)?;
        entries.push_str(&format!(
            "{{{},{}}},",
            lua_string(user),
            lua_string(password)
        ));
    }
    Ok(format!(
        r#"local um = require "core.usermanager"
for _, a in ipairs({{ {entries} }}) do
  local ok, err = um.create_user(a[1], a[2], {host})
  if not ok then error("creating " .. a[1] .. ": " .. tostring(err)) end
end
return "created""#,
        host = lua_string(host)
    ))
}
