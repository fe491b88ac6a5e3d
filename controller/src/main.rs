fn main() {
    eprintln!("lnst-ctl: not built yet");
    std::process::exit(3);
}
