//! Documentation generated from the code: `docs/configuration.md` is rendered from each
//! program's command line (clap), and a test of each program fails when the file no longer says
//! what the code does. `MC_UPDATE_DOCS=1` makes the same test write the file instead.

use std::path::PathBuf;

/// The workspace's `docs/` folder.
pub fn docs_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"))
}

/// One program's command line as markdown: every subcommand's flags, with their environment
/// variables and help.
pub fn command_reference(command: &clap::Command) -> String {
    let mut out = String::new();
    render(command, &mut Vec::new(), &mut out);
    out
}

fn render(command: &clap::Command, path: &mut Vec<String>, out: &mut String) {
    path.push(command.get_name().to_owned());
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
        .collect();
    let subcommands: Vec<&clap::Command> =
        command.get_subcommands().filter(|c| c.get_name() != "help").collect();
    if !args.is_empty() || subcommands.is_empty() {
        out.push_str(&format!("### `{}`\n\n", path.join(" ")));
        if let Some(about) = command.get_about() {
            out.push_str(&format!("{about}\n\n"));
        }
    }
    if !args.is_empty() {
        out.push_str("| flag | variable | what it sets |\n|---|---|---|\n");
        for arg in args {
            out.push_str(&format!("| {} | {} | {} |\n", flag(arg), variable(arg), help(arg)));
        }
        out.push('\n');
    }
    for sub in subcommands {
        render(sub, path, out);
    }
    path.pop();
}

fn flag(arg: &clap::Arg) -> String {
    match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("`--{long}`"),
        (None, Some(short)) => format!("`-{short}`"),
        (None, None) => format!("`{}`", arg.get_id().as_str().to_uppercase()),
    }
}

fn variable(arg: &clap::Arg) -> String {
    arg.get_env().map_or_else(|| "—".to_owned(), |env| format!("`{}`", env.to_string_lossy()))
}

fn help(arg: &clap::Arg) -> String {
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string().replace('\n', " ").replace('|', "\\|"))
        .unwrap_or_default();
    let defaults: Vec<String> =
        arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && !help.contains("[default") {
        help.push_str(&format!(" [default: {}]", defaults.join(", ")));
    }
    help
}

/// Checks that `docs/<file>` holds `content` between the markers of `section`
/// (`<!-- section:begin -->` … `<!-- section:end -->`); with `MC_UPDATE_DOCS=1` writes it there
/// instead. Panics, saying how to update the file, when it differs.
pub fn check_section(file: &str, section: &str, content: &str) {
    let path = docs_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (begin, end) = (format!("<!-- {section}:begin -->\n"), format!("<!-- {section}:end -->"));
    let start = text.find(&begin).map(|i| i + begin.len());
    let stop = text.find(&end);
    let (Some(start), Some(stop)) = (start, stop) else {
        panic!("{} has no {begin:?} … {end:?} markers", path.display());
    };
    if text[start..stop] == *content {
        return;
    }
    if std::env::var("MC_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{content}{}", &text[..start], &text[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "{} is out of date for {section}: run the test again with MC_UPDATE_DOCS=1 to rewrite it",
        path.display()
    );
}
