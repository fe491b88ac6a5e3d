fn main() {
    eprintln!("lnst-agent: not built yet");
    std::process::exit(3);
}
