// The upload page: files chosen or dropped are sent one by one, each as the raw body of its own
// request, with a progress bar and the server's verdict per file. Without this script the form
// posts all files at once and the server answers with a page.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.URLSearchParams) {
    return;
  }
  var input = form.querySelector('input[type="file"]');
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("upload-results");
  var csrfField = form.querySelector('input[name="csrf_token"]');
  var queue = [];
  var busy = false;

  function msg(name) {
    return form.getAttribute("data-msg-" + name) || name;
  }

  function fieldValue(name) {
    var field = form.querySelector('[name="' + name + '"]');
    return field && field.value ? field.value : "";
  }

  function show(item, text, isError) {
    item.status.textContent = text;
    item.status.className = isError ? "error" : "";
  }

  function errorText(xhr) {
    var body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch (ignored) {
      body = null;
    }
    if (body && body.error && body.error.message) {
      var fields = body.error.fields || {};
      var details = Object.keys(fields).filter(function (k) {
        return fields[k] !== body.error.message;
      }).map(function (k) {
        return k + ": " + fields[k];
      });
      return [body.error.message].concat(details).join(" ");
    }
    if (xhr.status === 400) {
      return msg("expired");
    }
    if (xhr.status === 403) {
      return msg("forbidden");
    }
    if (xhr.status === 413) {
      return msg("toolarge");
    }
    return msg("failed");
  }

  function finished(item, xhr) {
    var body = null;
    if (xhr.status === 200 || xhr.status === 201) {
      try {
        body = JSON.parse(xhr.responseText);
      } catch (ignored) {
        body = null;
      }
    }
    if (!body || !body.url) {
      item.progress.hidden = true;
      show(item, errorText(xhr), true);
      return;
    }
    item.progress.value = 100;
    show(item, (body.duplicate ? msg("duplicate") : msg("done")) + " – ", false);
    var link = document.createElement("a");
    link.href = body.url;
    link.textContent = msg("open");
    item.status.appendChild(link);
  }

  function send(item, done) {
    var params = new URLSearchParams();
    params.set("name", item.file.name);
    Object.keys(item.fields).forEach(function (key) {
      if (item.fields[key]) {
        params.set(key, item.fields[key]);
      }
    });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("data-upload-url") + "?" + params.toString());
    xhr.setRequestHeader("X-CSRFToken", csrfField ? csrfField.value : "");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable && event.total > 0) {
        item.progress.value = Math.round((100 * event.loaded) / event.total);
      }
    });
    xhr.upload.addEventListener("load", function () {
      show(item, msg("checking"), false);
    });
    xhr.addEventListener("load", function () {
      finished(item, xhr);
      done();
    });
    xhr.addEventListener("error", function () {
      item.progress.hidden = true;
      show(item, msg("network"), true);
      done();
    });
    show(item, msg("uploading"), false);
    xhr.send(item.file);
  }

  function next() {
    if (busy || queue.length === 0) {
      return;
    }
    busy = true;
    send(queue.shift(), function () {
      busy = false;
      next();
    });
  }

  function add(files) {
    var fields = { title: fieldValue("title"), taken_on: fieldValue("taken_on") };
    Array.prototype.forEach.call(files, function (file) {
      var li = document.createElement("li");
      var name = document.createElement("strong");
      name.textContent = file.name;
      var progress = document.createElement("progress");
      progress.max = 100;
      progress.value = 0;
      var status = document.createElement("span");
      li.appendChild(name);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(progress);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(status);
      list.appendChild(li);
      var item = { file: file, fields: fields, progress: progress, status: status };
      show(item, msg("waiting"), false);
      queue.push(item);
    });
    next();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.files || input.files.length === 0) {
      input.focus();
      var li = document.createElement("li");
      li.className = "error";
      li.textContent = msg("nofiles");
      list.appendChild(li);
      return;
    }
    add(input.files);
    input.value = "";
  });

  // A file dropped anywhere else would make the browser open it and leave the page.
  ["dragover", "drop"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      event.preventDefault();
    });
  });
  if (zone) {
    zone.addEventListener("dragover", function (event) {
      event.preventDefault();
      if (event.dataTransfer) {
        event.dataTransfer.dropEffect = "copy";
      }
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", function () {
      zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length > 0) {
        add(event.dataTransfer.files);
      }
    });
  }
})();
