// Follows a render on its job page: the job's server-sent events update the status, the
// progress bar and the stages; when it succeeds the "Watch the film" link appears.
(function () {
  "use strict";
  var job = document.getElementById("job");
  if (!job || !window.EventSource) return;
  var terminal = ["succeeded", "failed", "cancelled"];
  if (terminal.indexOf(job.dataset.status) !== -1) return;
  var status = document.getElementById("job-status");
  var bar = document.getElementById("job-progress");
  var stages = document.getElementById("job-stages");
  var error = document.getElementById("job-error");
  var watch = document.getElementById("watch-link");

  function show(event) {
    var state = JSON.parse(event.data);
    status.textContent = state.status;
    status.className = "status status-" + state.status;
    job.dataset.status = state.status;
    bar.value = state.progress;
    bar.textContent = state.progress + "%";
    stages.replaceChildren();
    Object.keys(state.stages).forEach(function (name) {
      var row = document.createElement("tr");
      [name, state.stages[name].status, state.stages[name].progress + "%"].forEach(function (text) {
        var cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      });
      stages.appendChild(row);
    });
    if (state.error) {
      error.textContent = state.error;
      error.hidden = false;
    }
    if (terminal.indexOf(state.status) !== -1) {
      source.close();
      var controls = document.getElementById("job-controls");
      if (controls) controls.hidden = true;
      if (state.status === "succeeded" && watch) watch.hidden = false;
    }
  }

  var source = new EventSource(job.dataset.events);
  ["queued", "running", "paused", "held"].concat(terminal).forEach(function (name) {
    source.addEventListener(name, show);
  });
})();
