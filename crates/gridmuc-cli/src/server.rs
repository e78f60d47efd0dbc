//! `gridmuc server`: a private Prosody or ejabberd with house, bot and operator accounts and a
//! provisioned neighbourhood room, so meters and the bot can be run by hand against it.

use std::path::PathBuf;

use anyhow::Context as _;
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig, ServerKind, generate_password};
use serde::Serialize;

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct Args {
    /// Number of house (meter) accounts to create: house-001, house-002, …
    #[arg(long, default_value_t = 50)]
    houses: usize,
    /// Local part of the neighbourhood room.
    #[arg(long, default_value = "neighbourhood")]
    room: String,
    /// Where to write the account passwords (default: inside the server's temporary directory).
    #[arg(long)]
    accounts_file: Option<PathBuf>,
    /// `prosody` or `ejabberd`.
    #[arg(long, default_value = "prosody")]
    server: ServerKind,
}

/// One account in the passwords file.
#[derive(Serialize)]
struct Account {
    role: &'static str,
    jid: String,
    password: String,
}

/// The passwords file: everything a meter or bot config needs to reach this server.
#[derive(Serialize)]
struct AccountsFile {
    server: String,
    domain: String,
    room: String,
    ca_cert: PathBuf,
    account: Vec<Account>,
}

/// Starts the server, creates the accounts and the room, prints how to connect, waits for Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let server = PrivateServer::start(ServerConfig {
        // The live page is served by Prosody; web/README.md says how to serve it elsewhere.
        web: (args.server == ServerKind::Prosody).then(crate::web::page),
        kind: args.server,
        ..ServerConfig::default()
    })?;
    let mut accounts: Vec<(&'static str, String, String)> = (1..=args.houses)
        .map(|i| ("house", format!("house-{i:03}"), generate_password()))
        .collect();
    accounts.push(("bot", "substation".to_owned(), generate_password()));
    accounts.push(("helper", "helper".to_owned(), generate_password()));
    accounts.push(("operator", "operator".to_owned(), generate_password()));
    let credentials: Vec<(String, String)> = accounts
        .iter()
        .map(|(_, user, password)| (user.clone(), password.clone()))
        .collect();
    server.register_many(&credentials)?;
    // The bots' nicknames are reserved for their accounts: no house can pose as either.
    let policy = RoomPolicy {
        reserved_nicks: ["substation", "helper"]
            .map(|b| (format!("{b}@{}", server.domain()), b.to_owned()))
            .to_vec(),
        ..RoomPolicy::default()
    };
    let room = server.provision_room(&args.room, &policy)?;
    // The bot's long-term key: the secret for the bot's `key_file`, the public half for every
    // meter's `bot_key`.
    let key = gridmuc_botkey::BotSecretKey::generate(&mut rand::rng());
    let key_path = server.work_dir().join("bot.key");
    write_secret(&key_path, key.to_text().as_bytes())?;
    // Private mode's helper bot, run by an independent party: its own key.
    let helper_key = gridmuc_botkey::BotSecretKey::generate(&mut rand::rng());
    let helper_key_path = server.work_dir().join("helper.key");
    write_secret(&helper_key_path, helper_key.to_text().as_bytes())?;

    let file = AccountsFile {
        server: server.c2s_addr().to_string(),
        domain: server.domain().to_owned(),
        room: room.clone(),
        ca_cert: server.ca_cert_path().to_owned(),
        account: accounts
            .into_iter()
            .map(|(role, user, password)| Account {
                role,
                jid: format!("{user}@{}", server.domain()),
                password,
            })
            .collect(),
    };
    let path = args
        .accounts_file
        .unwrap_or_else(|| server.work_dir().join("accounts.toml"));
    std::fs::write(&path, toml::to_string(&file)?)
        .with_context(|| format!("writing {}", path.display()))?;

    println!(
        "private {} running (Ctrl-C or SIGTERM stops it and deletes its files)",
        args.server
    );
    println!("  address   {}  (STARTTLS required)", file.server);
    println!("  domain    {}", file.domain);
    println!("  room      {room}");
    if let Some(url) = server.page_url(&room) {
        println!("  live page {url}");
    }
    println!("  CA cert   {}  (SSL_CERT_FILE)", file.ca_cert.display());
    println!(
        "  accounts  {} houses, substation@{d} (bot), helper@{d} (private mode), operator@{d}",
        args.houses,
        d = file.domain
    );
    println!("  passwords {}", path.display());
    println!(
        "  bot key   {}  (substation's key_file)",
        key_path.display()
    );
    println!(
        "  bot_key = \"{}\"  (pin in every meter's config)",
        key.public()
    );
    println!(
        "  helper key {}  (helper's key_file, private mode)",
        helper_key_path.display()
    );
    println!(
        "  helper_key = \"{}\"  ([private] of meters, substation and helper)",
        helper_key.public()
    );
    println!("  log       {}", server.log_path().display());

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::shutdown::requested());
    println!("stopping");
    server.stop()?;
    Ok(())
}

/// Writes a key file (see [`gridmuc_xmpp::bot::write_secret`]), naming it in any error.
fn write_secret(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    gridmuc_xmpp::bot::write_secret(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}
