//! Captures, a Belgian telegram and a private Mosquitto, shared by this crate's tests and
//! (through `#[path]`) by gridmuc-xmpp's live sources test.

#![allow(dead_code, clippy::unwrap_used)]

use gridmuc_source::MqttConfig;
use gridmuc_source::mqtt::Preset;
use std::process::{Child, Command};
use std::time::Duration;

/// A capture as the meter sent it: the crates store the text with bare newlines.
pub fn dsmr_capture(name: &str) -> Vec<u8> {
    let text =
        std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    text.lines()
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        .into_bytes()
}

pub fn sml_capture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A Belgian (Fluvius e-MUCS 1.7) telegram exporting 1.234 kW: decimal currents, a 13-month
/// demand history, a breaker state and a 24.2.3 gas register, none of which we read.
pub const FLUVIUS: &str = "/FLU5\\253769484_A

0-0:96.1.4(50217)
0-0:96.1.1(3153414733313031303231363035)
0-0:1.0.0(200512135409S)
1-0:1.8.1(000000.034*kWh)
1-0:1.8.2(000015.758*kWh)
1-0:2.8.1(000000.000*kWh)
1-0:2.8.2(000000.011*kWh)
1-0:1.4.0(02.351*kW)
1-0:1.6.0(200509134558S)(02.589*kW)
0-0:98.1.0(3)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)(200401000000S)(200305122139S)(05.980*kW)(200301000000S)(200210035421W)(04.318*kW)
0-0:96.14.0(0001)
1-0:1.7.0(00.000*kW)
1-0:2.7.0(01.234*kW)
1-0:21.7.0(00.000*kW)
1-0:22.7.0(01.234*kW)
1-0:32.7.0(234.7*V)
1-0:31.7.0(005.27*A)
0-0:96.3.10(1)
0-0:17.0.0(999.9*kW)
1-0:31.4.0(999*A)
0-0:96.13.0()
0-1:24.1.0(003)
0-1:96.1.1(37464C4F32313139303333373333)
0-1:24.4.0(1)
0-1:24.2.3(200512134558S)(00112.384*m3)
!";

/// A private Mosquitto on 127.0.0.1, stopped on drop.
pub struct Mosquitto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\npersistence false\n{extra}\n"),
        )
        .unwrap();
        // Debian installs it outside a normal user's PATH.
        let bin = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install -y mosquitto; scripts/setup does)");
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Mosquitto {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mosquitto did not listen on {port}");
    }

    pub fn config(&self, preset: Preset, topic: Option<&str>) -> MqttConfig {
        MqttConfig {
            broker: format!("127.0.0.1:{}", self.port),
            preset: Some(preset),
            topic: topic.map(str::to_owned),
            hold: Some(0.0),
            ..MqttConfig::default()
        }
    }

    /// A device publishing on `topic`.
    pub fn device(&self) -> rumqttc::AsyncClient {
        Mosquitto::device_at(self.port)
    }

    /// A device publishing through the plain listener on `port` (the broker's second one).
    pub fn device_at(port: u16) -> rumqttc::AsyncClient {
        let opts = rumqttc::MqttOptions::new(
            format!("device-{}", rand::random::<u32>()),
            "127.0.0.1",
            port,
        );
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 16);
        // A listener not ready yet refuses the first connect; rumqttc reconnects on the next
        // poll. Ending the loop on that error closed the client's channel: every later publish
        // failed (seen once in CI).
        tokio::spawn(async move {
            loop {
                if events.poll().await.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        });
        client
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
