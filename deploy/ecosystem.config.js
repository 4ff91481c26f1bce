// ghostbridge under PM2: one app, the watchdog, which starts and supervises
// the bridge, the executor and the monitor. See docs/deploy.md.
//
// As the service user, after creating its directories (docs/deploy.md, "PM2"):
//   pm2 start deploy/ecosystem.config.js && pm2 save
//   pm2 stop ghostbridge      (SIGINT; the watchdog stops its children)
//   pm2 sendSignal SIGHUP ghostbridge   (reload the configuration)
//
// Do not also run the bridge or the executor as PM2 apps: the watchdog owns
// them (restart limits, hang detection, process groups). The old setup's shell
// loop with `pkill -f` is replaced by this single app.
module.exports = {
  apps: [
    {
      name: "ghostbridge",
      // `--check` first: a missing or foreign data root, a bad configuration
      // or a missing binary is named in error_file and the app exits 1
      // (instead of "online" doing nothing); then `exec`, so the pid PM2
      // signals is the watchdog's. No `cwd`: PM2 could not even start the
      // shell in a missing directory (a bare ENOENT in PM2's own log).
      script: "/bin/sh",
      args: [
        "-c",
        "/usr/local/bin/ghost-watchdog --root /var/lib/ghostbridge --check && exec /usr/local/bin/ghost-watchdog --root /var/lib/ghostbridge --no-banner",
      ],
      interpreter: "none",
      exec_mode: "fork",
      instances: 1,
      // PM2's own restart-loop limit, over the watchdog's per-child one: a run
      // shorter than min_uptime is unstable; after max_restarts of those PM2
      // stops trying. Restarts back off from 1 s.
      autorestart: true,
      min_uptime: "30s",
      max_restarts: 5,
      exp_backoff_restart_delay: 1000,
      // A clean stop (exit 0) is not restarted.
      stop_exit_codes: [0],
      // PM2 stops with SIGINT, which the watchdog treats like SIGTERM. To
      // the watchdog alone (treekill off): it stops its children itself, in
      // order; the executor may need executor.shutdown_grace +
      // watchdog.stop_grace (30 s by default) before PM2's SIGKILL.
      treekill: false,
      kill_timeout: 60000,
      watch: false,
      merge_logs: true,
      out_file: "/var/log/ghostbridge/watchdog.out.log",
      error_file: "/var/log/ghostbridge/watchdog.err.log",
      env: {
        GHOST_ROOT: "/var/lib/ghostbridge",
        // GHOST_BRIDGE_TOKEN, GHOST_HMAC_KEY, GHOST_DASHBOARD_TOKEN and
        // GHOST_SLACK_WEBHOOK_URL may be set here; else they are generated
        // into /var/lib/ghostbridge/state/secrets/.
      },
    },
  ],
};
