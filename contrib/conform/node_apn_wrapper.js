// Adapts node-apn 1.7.x (npm "apn", the last binary-protocol release line) to
// `apns-legacy conform run --exec`:
//
//   apns-legacy conform run --agent node-apn-1.7.8 --exec \
//     "node contrib/conform/node_apn_wrapper.js {host} {port} {certs} {workload} {result}"
//
// with NODE_PATH pointing at the node_modules that install-peers.sh made. The library is
// used as its documentation says: apn.Connection with cert, key and ca; one
// apn.Notification per workload line (alert, priority, expiry from the line) to an
// apn.Device; "transmissionError" events are the failures (codes below 256 are the
// gateway's status, 512 and up node-apn's own); connection.shutdown() at the end, which
// waits 2.5 s for late error responses. A notification node-apn "transmitted" (its
// only notion of success) without a later transmissionError is reported accepted;
// one never transmitted is reported failed. Feedback: apn.Feedback
// with batchFeedback, one poll. Commands 0 and 1 are not offered by 1.7.x.
"use strict";
var fs = require("fs");
var apn = require("apn");

var args = process.argv.slice(2);
var host = args[0], port = parseInt(args[1], 10), certs = args[2];
var workload = args[3], resultPath = args[4];
var lines = fs.readFileSync(workload, "utf8").split("\n").filter(Boolean).map(JSON.parse);
var options = {
  cert: certs + "/client.pem", key: certs + "/client-key.pem", ca: [certs + "/ca.pem"],
  address: host, port: port, production: false,
};
var results = {};
var finished = false;
var quiet = null;

function finish(extra) {
  if (finished) { return; }
  finished = true;
  var out = (extra || []).slice();
  lines.forEach(function (line) {
    if (line.feedback) { return; }
    var r = results[line.index] || { outcome: "failed", reason: "never transmitted" };
    r.index = line.index;
    out.push(r);
  });
  fs.writeFileSync(resultPath, out.map(function (o) { return JSON.stringify(o); }).join("\n") + "\n");
  process.exit(0);
}

function touch(ms) {
  if (quiet) { clearTimeout(quiet); }
  quiet = setTimeout(function () { finish(); }, ms || 5000);
}

if (lines.length && lines[0].feedback) {
  options.batchFeedback = true;
  options.interval = 0;
  options.address = host;
  var feedback = new apn.Feedback(options);
  feedback.on("feedback", function (items) {
    var out = items.map(function (item) {
      return { feedback_token: item.device.toString(), timestamp: item.time };
    });
    lines = [];
    finish(out);
  });
  feedback.on("feedbackError", function (e) { console.error("feedbackError", e); });
  feedback.on("error", function (e) { console.error("error", e); });
  setTimeout(function () { lines = []; finish(); }, 15000);
} else if (lines.some(function (l) { return l.command === 0 || l.command === 1; })) {
  lines = [];
  finish([{ unimplemented: "node-apn 1.7 sends command 2 frames only" }]);
} else {
  options.gateway = host;
  var connection = new apn.Connection(options);
  var indexOf = {};
  connection.on("transmissionError", function (code, notification, device) {
    touch();
    var token = device && device.toString ? device.toString() : null;
    var index = token !== null ? indexOf[token] : undefined;
    console.error("transmissionError", code, token);
    if (index === undefined) { return; }
    if (code < 256) {
      results[index] = { outcome: "rejected", status: code };
    } else {
      results[index] = { outcome: "failed", reason: "node-apn error " + code };
    }
  });
  ["error", "socketError", "timeout", "cacheTooSmall"].forEach(function (name) {
    connection.on(name, function (e) { console.error(name, e && e.message ? e.message : e); touch(); });
  });
  connection.on("transmitted", function (notification, device) {
    touch();
    var index = device && device.toString ? indexOf[device.toString()] : undefined;
    if (index !== undefined && !results[index]) { results[index] = { outcome: "accepted" }; }
  });
  connection.on("disconnected", function (count) {
    console.error("disconnected", count);
    touch(3000);
  });
  var position = 0;
  var push = function () {
    while (position < lines.length) {
      var line = lines[position];
      if (line.after && !line.waited) {
        line.waited = true;
        setTimeout(push, line.after * 1000);
        return;
      }
      position += 1;
      var payload = JSON.parse(line.payload);
      var note = new apn.Notification();
      note.alert = payload.aps.alert;
      if (line.priority !== undefined) { note.priority = line.priority; }
      if (line.expiry !== undefined) { note.expiry = line.expiry; }
      var device = new apn.Device(line.token);
      indexOf[device.toString()] = line.index;
      connection.pushNotification(note, device);
    }
    connection.shutdown();
    touch();
  };
  push();
}
