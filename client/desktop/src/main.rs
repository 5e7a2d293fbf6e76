//! `ferry-desktop [FILE…]`: opens the window, with the files (if any) on
//! the Send list, as a file manager's "Open with" gives them.

use std::sync::Arc;

fn main() -> eframe::Result {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Ferry")
            .with_inner_size([960.0, 680.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let credentials = match ferry_client::Credentials::path() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ferry-desktop: {e}");
            std::process::exit(1);
        }
    };
    eframe::run_native(
        "Ferry",
        options,
        Box::new(|cc| {
            let ctx = cc.egui_ctx.clone();
            let mut app =
                ferry_desktop::FerryApp::new(Arc::new(move || ctx.request_repaint()), credentials);
            let files: Vec<std::path::PathBuf> =
                std::env::args_os().skip(1).map(Into::into).collect();
            if !files.is_empty() {
                app.open_paths(&files);
            }
            Ok(Box::new(app))
        }),
    )
}
