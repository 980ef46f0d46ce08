//! Checks of the test support itself.

use crate::support::fail2ban;

#[test]
fn fail2ban_package_unpacks_with_filters_and_samples() {
    let pkg = fail2ban::package();
    assert!(pkg.config_dir().join("filter.d/sshd.conf").is_file());
    assert!(pkg.sample_logs().join("sshd").is_file());
    let out = pkg
        .tool("fail2ban-client")
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(fail2ban::VERSION),
        "fail2ban-client --version: {text}"
    );
}
