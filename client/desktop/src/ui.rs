//! The window: Login, then Send, Transfers, Receive and Shares. It draws
//! the view-model (crate::model), turns clicks into worker commands, and
//! folds the worker's updates back in. Every control carries a label that
//! accessibility tools (and the UI tests, through AccessKit) find it by.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use egui::{Color32, RichText};
use ferry_api::{JobDetail, JobInfo, ShareEntry, ShareInfo};
use ferry_client::Credentials;
use ferry_client::deliver::SendRequest;
use ferry_client::signin::FirstContact;
use ferry_engine::tls::Fingerprint;

use crate::model::{Filter, JobRow, Priority, SendForm, Settings};
use crate::worker::{Command, Secret, Update, Worker};

/// The views of a signed-in window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Send,
    Transfers,
    Receive,
    Shares,
}

impl Tab {
    const ALL: [(Tab, &'static str); 4] = [
        (Tab::Send, "Send"),
        (Tab::Transfers, "Transfers"),
        (Tab::Receive, "Receive"),
        (Tab::Shares, "Shares"),
    ];
}

#[derive(Default)]
struct LoginForm {
    server: String,
    email: String,
    password: String,
    api_key: String,
    /// The certificate shown on first contact, waiting for a yes, and the
    /// one this computer trusted before for the same appliance.
    seen: Option<(FirstContact, Option<Fingerprint>)>,
    /// A one-time password was accepted: a new one is needed.
    renew: Option<(Box<Credentials>, Secret)>,
    new_password: String,
    repeat_password: String,
    busy: bool,
}

/// A folder of a share being looked at.
#[derive(Default)]
struct Browser {
    share: Option<String>,
    folder: String,
    entries: Vec<ShareEntry>,
    /// The (share, folder) asked for last, so each is asked once.
    asked: Option<(String, String)>,
    new_folder: String,
}

#[derive(Default)]
struct SharesView {
    browser: Browser,
    selected: BTreeSet<String>,
    recipients: SendForm,
}

/// The whole app.
pub struct FerryApp {
    worker: Worker,
    updates: Receiver<Update>,
    signed_in: Option<(String, String)>,
    login: LoginForm,
    pub tab: Tab,
    settings: Settings,
    high_extensions_text: String,
    settings_path: PathBuf,
    form: SendForm,
    add_path: String,
    dest: Browser,
    shares: Vec<ShareInfo>,
    known_users: Vec<String>,
    jobs: Vec<JobInfo>,
    filter: Filter,
    details: BTreeMap<i64, JobDetail>,
    priority_glob: BTreeMap<i64, (String, Priority)>,
    last_refresh: f64,
    receive_into: String,
    incoming: Vec<String>,
    shares_view: SharesView,
    /// The last thing said to the person, and whether it is a problem.
    message: Option<(String, bool)>,
    asking_to_close: bool,
    quit_anyway: bool,
    /// The Send form's delivery is being made and uploaded.
    form_sending: bool,
    /// The window's title says which view is open.
    title: Option<Tab>,
}

impl FerryApp {
    /// The app; `wake` asks the window to repaint when news arrives, and
    /// the sign-in is kept in `credentials` (`ferry login`'s file by
    /// default, so one sign-in serves both).
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>, credentials: PathBuf) -> Self {
        let settings_path = credentials.with_file_name("desktop.toml");
        let settings = Settings::load(&settings_path);
        let (worker, updates) = Worker::start(wake, credentials);
        let receive_into = settings
            .receive_into
            .clone()
            .or_else(|| {
                dirs::download_dir()
                    .or_else(dirs::home_dir)
                    .map(|d| d.join("Ferry"))
            })
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let mut app = FerryApp {
            worker,
            updates,
            signed_in: None,
            login: LoginForm {
                server: "https://".into(),
                ..Default::default()
            },
            tab: Tab::Send,
            high_extensions_text: settings.high_extensions.join(", "),
            settings,
            settings_path,
            form: SendForm::default(),
            add_path: String::new(),
            dest: Browser::default(),
            shares: Vec::new(),
            known_users: Vec::new(),
            jobs: Vec::new(),
            filter: Filter::All,
            details: BTreeMap::new(),
            priority_glob: BTreeMap::new(),
            last_refresh: f64::NEG_INFINITY,
            receive_into,
            incoming: Vec::new(),
            shares_view: SharesView::default(),
            message: None,
            asking_to_close: false,
            quit_anyway: false,
            form_sending: false,
            title: None,
        };
        if app.worker.resume_session() {
            app.login.busy = true;
        }
        app
    }

    /// Takes in what the worker did since the last frame.
    fn absorb(&mut self) {
        while let Ok(u) = self.updates.try_recv() {
            match u {
                Update::Seen { contact, pinned } => {
                    self.login.busy = false;
                    if pinned == Some(contact.fingerprint) {
                        // The certificate this computer already trusts.
                        self.sign_in(contact);
                    } else {
                        self.login.seen = Some((contact, pinned));
                    }
                }
                Update::NewPasswordNeeded {
                    credentials,
                    current,
                } => {
                    self.login.busy = false;
                    self.login.seen = None;
                    self.login.renew = Some((credentials, current));
                }
                Update::ReceivingEnded { start, why } => {
                    self.worker.receiving_ended(start);
                    self.say(why, false);
                }
                Update::SignedIn { email, server } => {
                    self.login = LoginForm::default();
                    self.signed_in = Some((email, server));
                    self.worker.run(Command::LoadShares);
                    if self.settings.receiving {
                        // Receive was on when the app closed.
                        self.start_receiving();
                    }
                    self.worker.run(Command::RefreshJobs);
                }
                Update::Shares(s) => {
                    if self.dest.share.is_none() {
                        self.dest.share = s.iter().find(|s| s.write).map(|s| s.name.clone());
                        self.form.share = self.dest.share.clone();
                    }
                    if self.shares_view.browser.share.is_none() {
                        self.shares_view.browser.share =
                            s.iter().find(|s| s.read).map(|s| s.name.clone());
                    }
                    self.shares = s;
                }
                Update::Users(u) => {
                    for email in u {
                        if !self.known_users.contains(&email) {
                            self.known_users.push(email);
                        }
                    }
                }
                Update::Listing {
                    share,
                    folder,
                    entries,
                } => {
                    for b in [&mut self.dest, &mut self.shares_view.browser] {
                        if b.share.as_deref() == Some(share.as_str()) && b.folder == folder {
                            b.entries = entries.clone();
                        }
                    }
                }
                Update::Transmitted {
                    from_form,
                    jobs,
                    missing,
                } => {
                    if from_form {
                        // Only now: a failed send keeps the list to try again.
                        self.form_sending = false;
                        self.form.items.clear();
                        self.form.name.clear();
                    }
                    let mut text = format!(
                        "Sent: {} job{} made.",
                        jobs.len(),
                        if jobs.len() == 1 { "" } else { "s" }
                    );
                    if !missing.is_empty() {
                        text.push_str(&format!(" Note: {}", missing.join("; ")));
                    }
                    self.say(text, false);
                    self.worker.run(Command::RefreshJobs);
                }
                Update::TransmitFailed { from_form, why } => {
                    if from_form {
                        self.form_sending = false;
                    }
                    self.say(why, true);
                }
                Update::Jobs(j) => {
                    let live: BTreeSet<i64> = j.iter().map(|j| j.id).collect();
                    self.details.retain(|id, _| live.contains(id));
                    self.jobs = j;
                }
                Update::Job(d) => {
                    self.details.insert(d.job.id, *d);
                }
                Update::Incoming(line) => self.incoming.push(line),
                Update::Said(text) => self.say(text, false),
                Update::Failed(text) => {
                    self.login.busy = false;
                    self.say(text, true);
                }
            }
        }
    }

    /// The recipients on the Send form.
    pub fn form_recipients(&self) -> &[String] {
        &self.form.recipients
    }

    /// The priority chosen for a line of the Send form, by its label.
    pub fn priority_of(&self, label: &str) -> Option<&'static str> {
        self.form
            .items
            .iter()
            .find(|i| i.label == label)
            .map(|i| i.priority.label())
    }

    /// The newest job delivering to `recipient`, as listed.
    pub fn job_of(&self, recipient: &str) -> Option<i64> {
        self.jobs
            .iter()
            .find(|j| j.recipient.as_deref() == Some(recipient))
            .map(|j| j.id)
    }

    /// The jobs as last listed.
    pub fn jobs(&self) -> &[JobInfo] {
        &self.jobs
    }

    /// A job's status, as listed.
    pub fn status_of(&self, job: i64) -> Option<ferry_api::JobStatus> {
        self.jobs.iter().find(|j| j.id == job).map(|j| j.status)
    }

    /// The last thing the window told the person, if anything.
    pub fn said(&self) -> Option<&str> {
        self.message.as_ref().map(|(m, _)| m.as_str())
    }

    /// Uploads running now.
    pub fn uploads_running(&self) -> usize {
        self.worker.uploads_running()
    }

    fn say(&mut self, text: String, problem: bool) {
        self.message = Some((text, problem));
    }

    /// Draws one frame.
    pub fn show(&mut self, ctx: &egui::Context) {
        self.absorb();
        self.take_dropped_files(ctx);
        self.guard_close(ctx);
        if self.signed_in.is_none() {
            egui::CentralPanel::default().show(ctx, |ui| self.login_view(ui));
            return;
        }
        let now = ctx.input(|i| i.time);
        if now - self.last_refresh > 1.0 {
            self.last_refresh = now;
            self.worker.run(Command::RefreshJobs);
            for &id in self.details.keys() {
                self.worker.run(Command::LoadJob(id));
            }
        }
        ctx.request_repaint_after(std::time::Duration::from_secs(1));
        if self.title != Some(self.tab) {
            // The title names the view: for people switching windows, and
            // for the screenshot test, which reads it.
            self.title = Some(self.tab);
            let label = Tab::ALL
                .iter()
                .find(|(t, _)| *t == self.tab)
                .map_or("", |(_, l)| l);
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(format!("Ferry - {label}")));
        }
        ctx.input(|i| {
            for (n, (tab, _)) in Tab::ALL.iter().enumerate() {
                let key = [
                    egui::Key::Num1,
                    egui::Key::Num2,
                    egui::Key::Num3,
                    egui::Key::Num4,
                ][n];
                if i.modifiers.command && i.key_pressed(key) {
                    self.tab = *tab;
                }
            }
        });
        egui::TopBottomPanel::top("tabs").show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.heading("Ferry");
                ui.separator();
                for (tab, label) in Tab::ALL {
                    ui.selectable_value(&mut self.tab, tab, label);
                }
                if let Some((email, server)) = self.signed_in.clone() {
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        if ui.small_button("Sign out").clicked() {
                            self.worker.sign_out();
                            self.signed_in = None;
                            self.jobs.clear();
                            self.details.clear();
                            self.incoming.clear();
                        }
                        ui.label(RichText::new(format!("{email} · {server}")).weak());
                    });
                }
            });
        });
        egui::TopBottomPanel::bottom("status").show(ctx, |ui| {
            match &self.message {
                Some((text, true)) => ui.colored_label(Color32::from_rgb(200, 60, 40), text),
                Some((text, false)) => ui.label(text),
                None => ui.label(RichText::new("Ready.").weak()),
            };
        });
        egui::CentralPanel::default().show(ctx, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| match self.tab {
                Tab::Send => self.send_view(ui),
                Tab::Transfers => self.transfers_view(ui),
                Tab::Receive => self.receive_view(ui),
                Tab::Shares => self.shares_view(ui),
            });
        });
        if self.asking_to_close {
            self.close_dialog(ctx);
        }
    }

    fn take_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .filter_map(|f| f.path.clone())
                .collect()
        });
        if !dropped.is_empty() {
            self.add_paths(&dropped);
        }
    }

    /// Puts files and folders on the Send list, as a drop does (and as
    /// `ferry-desktop FILE…` does at start).
    pub fn open_paths(&mut self, paths: &[PathBuf]) {
        self.add_paths(paths);
    }

    fn add_paths(&mut self, paths: &[PathBuf]) {
        self.tab = Tab::Send;
        let problems = self.form.add_paths(paths, &self.settings);
        if !problems.is_empty() {
            self.say(format!("Could not add {}", problems.join("; ")), true);
        }
    }

    /// Closing while an upload runs asks first: the upload resumes at the
    /// next start, but the recipients wait until then.
    fn guard_close(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.viewport().close_requested())
            && self.worker.uploads_running() > 0
            && !self.quit_anyway
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.asking_to_close = true;
        }
    }

    fn close_dialog(&mut self, ctx: &egui::Context) {
        egui::Window::new("An upload is running")
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label(
                    "If you quit now, the recipients wait until Ferry is opened again on this \
                     computer; the upload then goes on from where it stopped.",
                );
                ui.horizontal(|ui| {
                    if ui.button("Keep uploading").clicked() {
                        self.asking_to_close = false;
                    }
                    if ui.button("Quit anyway").clicked() {
                        self.asking_to_close = false;
                        self.quit_anyway = true;
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                });
            });
    }

    fn sign_in(&mut self, contact: FirstContact) {
        let secret = if self.login.api_key.is_empty() {
            Secret::Password(self.login.password.clone())
        } else {
            Secret::ApiKey(self.login.api_key.clone())
        };
        self.login.busy = true;
        self.login.seen = None;
        self.worker.run(Command::SignIn {
            contact,
            email: self.login.email.clone(),
            secret,
        });
    }

    fn login_view(&mut self, ui: &mut egui::Ui) {
        ui.heading("Sign in to your Ferry appliance");
        ui.add_space(8.0);
        if let Some((credentials, current)) = self.login.renew.clone() {
            ui.label("This password was for the first sign-in only: choose your own (at least 8 characters).");
            egui::Grid::new("renew").num_columns(2).show(ui, |ui| {
                labelled_edit(ui, "New password", &mut self.login.new_password, true);
                labelled_edit(ui, "Repeat it", &mut self.login.repeat_password, true);
            });
            let same = self.login.new_password == self.login.repeat_password;
            if !same {
                ui.label(RichText::new("The two do not match yet.").weak());
            }
            if ui
                .add_enabled(
                    same && !self.login.new_password.is_empty() && !self.login.busy,
                    egui::Button::new("Change password and sign in"),
                )
                .clicked()
            {
                self.login.busy = true;
                self.worker.run(Command::ChangePassword {
                    credentials,
                    current,
                    new: self.login.new_password.clone(),
                });
            }
        } else {
            egui::Grid::new("login").num_columns(2).show(ui, |ui| {
                labelled_edit(ui, "Server", &mut self.login.server, false);
                labelled_edit(ui, "Email", &mut self.login.email, false);
                labelled_edit(ui, "Password", &mut self.login.password, true);
                labelled_edit(ui, "or API key", &mut self.login.api_key, true);
            });
        }
        ui.add_space(8.0);
        if let Some((contact, pinned)) = self.login.seen.clone() {
            let server = &contact.server;
            let trust = match pinned {
                Some(before) => {
                    ui.colored_label(
                        Color32::from_rgb(200, 60, 40),
                        format!(
                            "{server} now presents a certificate for another key than the one this                              computer trusted ({before}). Do not go on unless the facility's IT                              tells you it was changed. The new key (SHA-256):"
                        ),
                    );
                    "Trust the new certificate and sign in"
                }
                None => {
                    ui.label(format!(
                        "{server} presents a certificate for this key (SHA-256). Check it against the one                          your facility gave you before you go on:"
                    ));
                    "Trust and sign in"
                }
            };
            ui.monospace(contact.fingerprint.to_string());
            ui.horizontal(|ui| {
                if ui.button(trust).clicked() {
                    self.sign_in(contact.clone());
                }
                if ui.button("Cancel").clicked() {
                    self.login.seen = None;
                }
            });
        } else if self.login.renew.is_none()
            && ui
                .add_enabled(!self.login.busy, egui::Button::new("Connect"))
                .clicked()
        {
            self.login.busy = true;
            self.message = None;
            self.worker.run(Command::FirstContact {
                server: self.login.server.clone(),
            });
        }
        if let Some((text, _)) = &self.message {
            ui.colored_label(Color32::from_rgb(200, 60, 40), text);
        }
    }

    fn send_view(&mut self, ui: &mut egui::Ui) {
        ui.heading("Send");
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            if self.form.items.is_empty() {
                ui.label(
                    RichText::new("Drop files and folders here")
                        .size(18.0)
                        .weak(),
                );
            }
            let mut remove = None;
            egui::Grid::new("items")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for (n, item) in self.form.items.iter_mut().enumerate() {
                        ui.label(&item.label);
                        ui.label(RichText::new(item.detail()).weak());
                        egui::ComboBox::from_id_salt(("priority", n))
                            .selected_text(item.priority.label())
                            .show_ui(ui, |ui| {
                                for p in Priority::ALL {
                                    ui.selectable_value(&mut item.priority, p, p.label());
                                }
                            })
                            .response
                            .widget_info(|| {
                                egui::WidgetInfo::labeled(
                                    egui::WidgetType::ComboBox,
                                    true,
                                    format!("Priority of {}", item.label),
                                )
                            });
                        if ui.small_button("Remove").clicked() {
                            remove = Some(n);
                        }
                        ui.end_row();
                    }
                });
            if let Some(n) = remove {
                self.form.items.remove(n);
            }
            ui.horizontal(|ui| {
                labelled_line(ui, "Add a file or folder by path", &mut self.add_path);
                if ui.button("Add").clicked() && !self.add_path.trim().is_empty() {
                    let p = PathBuf::from(self.add_path.trim());
                    self.add_path.clear();
                    self.add_paths(&[p]);
                }
            });
        });
        ui.add_space(6.0);
        ui.label(RichText::new("Recipients").strong());
        if let Some(typed) = recipients_editor(ui, &mut self.form, &self.known_users, "send") {
            self.worker.run(Command::Complete { typed });
        }
        ui.add_space(6.0);
        ui.label(RichText::new("Destination on the appliance").strong());
        self.destination_picker(ui);
        ui.add_space(6.0);
        ui.horizontal(|ui| labelled_line(ui, "Job name", &mut self.form.name));
        egui::CollapsingHeader::new("Settings").show(ui, |ui| {
            ui.horizontal(|ui| {
                labelled_line(
                    ui,
                    "High priority by default",
                    &mut self.high_extensions_text,
                );
            });
            let high: Vec<String> = self
                .high_extensions_text
                .split([',', ' '])
                .map(|e| e.trim().trim_start_matches('.').to_lowercase())
                .filter(|e| !e.is_empty())
                .collect();
            if high != self.settings.high_extensions {
                self.settings.high_extensions = high;
                self.keep_settings();
            }
        });
        ui.add_space(8.0);
        let ready = self.form.ready();
        ui.horizontal(|ui| {
            let transmit = ui.add_enabled(
                ready.is_ok() && !self.form_sending,
                egui::Button::new(RichText::new("Transmit").size(18.0)),
            );
            if self.form_sending {
                ui.label(RichText::new("Uploading: follow it in Transfers.").weak());
            } else if let Err(why) = &ready {
                ui.label(RichText::new(why.to_string()).weak());
            }
            // The full request (every file, every rule) only on the click.
            if transmit.clicked()
                && let Ok(req) = self.form.request(&self.settings)
            {
                self.worker.run(Command::Transmit {
                    request: req,
                    from_form: true,
                });
                self.form_sending = true;
                self.say("Sending…".into(), false);
                self.tab = Tab::Transfers;
            }
        });
    }

    fn destination_picker(&mut self, ui: &mut egui::Ui) {
        let writable: Vec<String> = self
            .shares
            .iter()
            .filter(|s| s.write)
            .map(|s| s.name.clone())
            .collect();
        let before = (self.dest.share.clone(), self.dest.folder.clone());
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("dest-share")
                .selected_text(self.dest.share.clone().unwrap_or_else(|| "Share…".into()))
                .show_ui(ui, |ui| {
                    for s in &writable {
                        ui.selectable_value(&mut self.dest.share, Some(s.clone()), s);
                    }
                })
                .response
                .widget_info(|| {
                    egui::WidgetInfo::labeled(egui::WidgetType::ComboBox, true, "Destination share")
                });
            labelled_line(ui, "Folder", &mut self.dest.folder);
        });
        browse_folders(ui, &mut self.dest, &mut self.worker, false, None);
        self.form.share = self.dest.share.clone();
        self.form.folder = self.dest.folder.clone();
        if before != (self.dest.share.clone(), self.dest.folder.clone()) {
            self.dest.entries.clear();
        }
    }

    fn transfers_view(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Transfers");
            ui.separator();
            ui.selectable_value(&mut self.filter, Filter::All, "All");
            ui.selectable_value(&mut self.filter, Filter::Finished, "Finished");
        });
        let rows: Vec<JobRow> = self
            .jobs
            .iter()
            .map(JobRow::of)
            .filter(|r| r.shown_in(self.filter))
            .collect();
        if rows.is_empty() {
            ui.label(RichText::new("No transfers yet.").weak());
        }
        for row in rows {
            let marker = if row.in_motion { "▶" } else { "  " };
            let title = format!(
                "{marker} #{} {} — {} — {}",
                row.id, row.name, row.direction, row.status
            );
            let header = egui::CollapsingHeader::new(title)
                .id_salt(("job", row.id))
                .show(ui, |ui| {
                    if !self.details.contains_key(&row.id)
                        && let Some(job) = self.jobs.iter().find(|j| j.id == row.id).cloned()
                    {
                        // Shown at once; tasks follow from the appliance.
                        self.worker.run(Command::LoadJob(row.id));
                        self.details.insert(
                            row.id,
                            JobDetail {
                                job,
                                tasks: Vec::new(),
                                lines: Vec::new(),
                            },
                        );
                    }
                    self.job_body(ui, &row);
                });
            ui.add(
                egui::ProgressBar::new(row.fraction).text(
                    format!("{}  {}  {}", row.progress, row.rate, row.eta)
                        .trim()
                        .to_owned(),
                ),
            );
            if let Some(e) = &row.error {
                ui.colored_label(Color32::from_rgb(200, 60, 40), e);
            }
            header.header_response.context_menu(|ui| {
                for action in row.actions() {
                    if ui.button(crate::model::label(action)).clicked() {
                        self.worker.run(Command::Act {
                            job: row.id,
                            action,
                        });
                        ui.close();
                    }
                }
            });
            if header.body_returned.is_none() {
                self.details.remove(&row.id);
            }
            ui.separator();
        }
    }

    fn job_body(&mut self, ui: &mut egui::Ui, row: &JobRow) {
        ui.horizontal(|ui| {
            for action in row.actions() {
                if ui
                    .button(crate::model::label(action))
                    .on_hover_text(format!("{} job {}", crate::model::label(action), row.id))
                    .clicked()
                {
                    self.worker.run(Command::Act {
                        job: row.id,
                        action,
                    });
                }
            }
        });
        if row.may_reprioritise() {
            let (glob, prio) = self
                .priority_glob
                .entry(row.id)
                .or_insert_with(|| ("*.mov".into(), Priority::High));
            ui.horizontal(|ui| {
                labelled_line(ui, "Files matching", glob);
                egui::ComboBox::from_id_salt(("job-priority", row.id))
                    .selected_text(prio.label())
                    .show_ui(ui, |ui| {
                        for p in Priority::ALL {
                            ui.selectable_value(prio, p, p.label());
                        }
                    });
                if ui.button("Set priority").clicked() {
                    self.worker.run(Command::SetPriority {
                        job: row.id,
                        glob: glob.clone(),
                        priority: match prio {
                            Priority::High => "high",
                            Priority::Normal => "normal",
                            Priority::Low => "low",
                        }
                        .into(),
                    });
                }
            });
        }
        if let Some(d) = self.details.get(&row.id) {
            egui::Grid::new(("tasks", row.id))
                .striped(true)
                .show(ui, |ui| {
                    for line in &d.lines {
                        ui.label(&line.name);
                        let mut what = format!(
                            "{} · {} · priority {}",
                            line.status,
                            crate::model::human_bytes(line.size.max(0) as u64),
                            line.priority
                        );
                        if !line.missing.is_empty() {
                            what.push_str(&format!(" · missing {}", line.missing.join(", ")));
                        }
                        ui.label(RichText::new(what).weak());
                        ui.end_row();
                    }
                });
        }
    }

    fn start_receiving(&mut self) {
        let into = PathBuf::from(&self.receive_into);
        self.worker
            .run(Command::StartReceiving { into: into.clone() });
        self.settings.receiving = true;
        self.settings.receive_into = Some(into);
        self.keep_settings();
    }

    fn keep_settings(&mut self) {
        if let Err(e) = self.settings.save(&self.settings_path) {
            self.say(
                format!(
                    "Could not keep the settings in {}: {e}",
                    self.settings_path.display()
                ),
                true,
            );
        }
    }

    fn receive_view(&mut self, ui: &mut egui::Ui) {
        ui.heading("Receive");
        ui.label("Deliveries sent to you are saved here, each in a folder of its own name.");
        ui.horizontal(|ui| {
            labelled_line(ui, "Save into", &mut self.receive_into);
            if ui.button("Open folder").clicked() {
                let _ = std::fs::create_dir_all(&self.receive_into);
                if let Err(e) = open::that_detached(&self.receive_into) {
                    self.say(format!("Could not open {}: {e}", self.receive_into), true);
                }
            }
        });
        if self.worker.is_receiving() {
            ui.label("▶ Receiving: new deliveries come in by themselves.");
            if ui.button("Stop receiving").clicked() {
                self.worker.run(Command::StopReceiving);
                self.settings.receiving = false;
                self.keep_settings();
            }
        } else if ui.button("Start receiving").clicked() {
            self.start_receiving();
        }
        ui.separator();
        for line in self.incoming.iter().rev().take(200) {
            ui.label(line);
        }
    }

    fn shares_view(&mut self, ui: &mut egui::Ui) {
        ui.heading("Shares");
        let readable: Vec<String> = self
            .shares
            .iter()
            .filter(|s| s.read)
            .map(|s| s.name.clone())
            .collect();
        let view = &mut self.shares_view;
        egui::ComboBox::from_id_salt("browse-share")
            .selected_text(
                view.browser
                    .share
                    .clone()
                    .unwrap_or_else(|| "Share…".into()),
            )
            .show_ui(ui, |ui| {
                for s in &readable {
                    if ui
                        .selectable_value(&mut view.browser.share, Some(s.clone()), s)
                        .clicked()
                    {
                        view.browser.folder.clear();
                        view.browser.entries.clear();
                        view.selected.clear();
                    }
                }
            });
        browse_folders(
            ui,
            &mut view.browser,
            &mut self.worker,
            true,
            Some(&mut view.selected),
        );
        ui.add_space(6.0);
        ui.label(RichText::new("Send the selected files to").strong());
        if let Some(typed) =
            recipients_editor(ui, &mut view.recipients, &self.known_users, "shares")
        {
            self.worker.run(Command::Complete { typed });
        }
        let can = !view.selected.is_empty() && !view.recipients.recipients.is_empty();
        if ui
            .add_enabled(can, egui::Button::new("Send from the share"))
            .clicked()
            && let Some(share) = view.browser.share.clone()
        {
            let paths = view
                .selected
                .iter()
                .map(|p| format!("share={share}/{p}"))
                .collect();
            self.worker.run(Command::Transmit {
                request: SendRequest {
                    paths,
                    recipients: view.recipients.recipients.clone(),
                    ..Default::default()
                },
                from_form: false,
            });
            view.selected.clear();
            self.say(
                "Sending from the share: nothing is uploaded again.".into(),
                false,
            );
        }
    }
}

impl eframe::App for FerryApp {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.show(ctx);
    }
}

fn labelled_edit(ui: &mut egui::Ui, label: &str, value: &mut String, secret: bool) {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(value)
            .password(secret)
            .desired_width(320.0),
    )
    .labelled_by(l.id);
    ui.end_row();
}

fn labelled_line(ui: &mut egui::Ui, label: &str, value: &mut String) -> egui::Response {
    let l = ui.label(label);
    ui.text_edit_singleline(value).labelled_by(l.id)
}

/// Recipient chips, an address field with completion, and Add. Returns
/// what was typed when it changed, to ask the appliance for completions.
/// An address nobody has an account for gets an invitation with the
/// delivery.
fn recipients_editor(
    ui: &mut egui::Ui,
    form: &mut SendForm,
    known: &[String],
    salt: &str,
) -> Option<String> {
    ui.push_id(salt, |ui| {
        let mut remove = None;
        ui.horizontal_wrapped(|ui| {
            for (n, r) in form.recipients.iter().enumerate() {
                if ui
                    .button(format!("{r}  ✕"))
                    .on_hover_text("Remove this recipient")
                    .clicked()
                {
                    remove = Some(n);
                }
            }
        });
        if let Some(n) = remove {
            form.recipients.remove(n);
        }
        let mut problem = None;
        let mut typed = None;
        ui.horizontal(|ui| {
            let field = labelled_line(ui, "Recipient email", &mut form.recipient_input);
            if field.changed() && form.recipient_input.trim().chars().count() >= 2 {
                typed = Some(form.recipient_input.trim().to_owned());
            }
            let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button("Add recipient").clicked() || entered)
                && !form.recipient_input.trim().is_empty()
            {
                let typed = form.recipient_input.clone();
                if let Err(e) = form.add_recipient(&typed) {
                    problem = Some(e.to_string());
                }
            }
        });
        let picks: Vec<String> = form
            .suggestions(known)
            .into_iter()
            .map(str::to_owned)
            .collect();
        ui.horizontal_wrapped(|ui| {
            for s in picks {
                if ui.small_button(&s).clicked() {
                    let _ = form.add_recipient(&s);
                }
            }
        });
        if let Some(p) = problem {
            ui.colored_label(Color32::from_rgb(200, 60, 40), p);
        }
        ui.label(
            RichText::new("Someone without an account gets an invitation with the delivery.")
                .weak()
                .small(),
        );
        typed
    })
    .inner
}

/// A share's folder: its subfolders to walk into (and files to select,
/// when `select` is given), and a field to make a new folder.
fn browse_folders(
    ui: &mut egui::Ui,
    b: &mut Browser,
    worker: &mut Worker,
    files: bool,
    mut select: Option<&mut BTreeSet<String>>,
) {
    let Some(share) = b.share.clone() else {
        return;
    };
    let header =
        egui::CollapsingHeader::new(format!("Browse {share}/{}", b.folder.trim_matches('/')))
            .id_salt(("browse", files))
            .default_open(files)
            .show(ui, |ui| {
                let mut into = None;
                if !b.folder.trim_matches('/').is_empty() && ui.button("⬆ Up").clicked() {
                    let f = b.folder.trim_matches('/');
                    into = Some(
                        f.rsplit_once('/')
                            .map_or(String::new(), |(p, _)| p.to_owned()),
                    );
                }
                for e in &b.entries {
                    let path = join(&b.folder, &e.name);
                    if e.kind == ferry_api::EntryKind::Folder {
                        if ui.button(format!("📁 {}", e.name)).clicked() {
                            into = Some(path);
                        }
                    } else if files
                        && e.kind == ferry_api::EntryKind::File
                        && let Some(sel) = select.as_deref_mut()
                    {
                        let mut on = sel.contains(&path);
                        if ui.checkbox(&mut on, &e.name).changed() {
                            if on {
                                sel.insert(path);
                            } else {
                                sel.remove(&path);
                            }
                        }
                    }
                }
                if let Some(f) = into {
                    // Listed at the end of this frame, once.
                    b.folder = f;
                    b.entries.clear();
                }
                ui.horizontal(|ui| {
                    labelled_line(ui, "New folder", &mut b.new_folder);
                    if ui.button("Make folder").clicked() && !b.new_folder.trim().is_empty() {
                        let folder = join(&b.folder, b.new_folder.trim());
                        worker.run(Command::MakeFolder {
                            share: share.clone(),
                            folder: folder.clone(),
                        });
                        // The worker lists it once it is made.
                        b.asked = Some((share.clone(), folder.clone()));
                        b.folder = folder;
                        b.entries.clear();
                        b.new_folder.clear();
                    }
                });
            });
    let here = (share.clone(), b.folder.clone());
    if header.fully_open() && b.asked.as_ref() != Some(&here) {
        // Load on open, once per folder (an empty folder stays asked).
        b.entries.clear();
        worker.run(Command::Browse {
            share,
            folder: b.folder.clone(),
        });
        b.asked = Some(here);
    }
}

fn join(folder: &str, name: &str) -> String {
    let f = folder.trim_matches('/');
    if f.is_empty() {
        name.to_owned()
    } else {
        format!("{f}/{name}")
    }
}
