// The tagging page: drag a rectangle over the photo to fill in the "add a face" form's box.
// Without this script the same form takes the four numbers typed in.
(function () {
  "use strict";

  var svg = document.getElementById("tagging-photo");
  var form = document.getElementById("add-face-form");
  if (!svg || !form || !svg.createSVGPoint || !window.PointerEvent) {
    return;
  }
  var NS = "http://www.w3.org/2000/svg";
  var MIN_SIDE = 8;
  var width = parseInt(svg.getAttribute("data-width"), 10);
  var height = parseInt(svg.getAttribute("data-height"), 10);
  var inputs = {
    x: document.getElementById("box-x"),
    y: document.getElementById("box-y"),
    w: document.getElementById("box-w"),
    h: document.getElementById("box-h")
  };
  var start = null;
  var dragged = false;
  var drawn = document.createElementNS(NS, "rect");
  drawn.setAttribute("class", "box drawing");
  drawn.setAttribute("fill", "none");
  drawn.setAttribute("stroke-width", "3");
  drawn.setAttribute("vector-effect", "non-scaling-stroke");
  drawn.setAttribute("id", "drawn-box");

  function clamp(value, low, high) {
    return Math.max(low, Math.min(high, value));
  }

  function photoPoint(event) {
    var point = svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    var inPhoto = point.matrixTransform(svg.getScreenCTM().inverse());
    return { x: clamp(inPhoto.x, 0, width), y: clamp(inPhoto.y, 0, height) };
  }

  function boxTo(end) {
    var x = Math.round(Math.min(start.x, end.x));
    var y = Math.round(Math.min(start.y, end.y));
    return {
      x: x,
      y: y,
      w: Math.min(Math.round(Math.abs(end.x - start.x)), width - x),
      h: Math.min(Math.round(Math.abs(end.y - start.y)), height - y)
    };
  }

  function show(box) {
    drawn.setAttribute("x", box.x);
    drawn.setAttribute("y", box.y);
    drawn.setAttribute("width", box.w);
    drawn.setAttribute("height", box.h);
    if (!drawn.parentNode) {
      svg.appendChild(drawn);
    }
  }

  function fill(box) {
    inputs.x.value = box.x;
    inputs.y.value = box.y;
    inputs.w.value = box.w;
    inputs.h.value = box.h;
  }

  svg.classList.add("drawable");
  svg.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) {
      return;
    }
    event.preventDefault();
    start = photoPoint(event);
    dragged = false;
    svg.setPointerCapture(event.pointerId);
  });
  svg.addEventListener("pointermove", function (event) {
    if (!start) {
      return;
    }
    var box = boxTo(photoPoint(event));
    if (box.w > 2 || box.h > 2) {
      dragged = true;
      show(box);
    }
  });
  svg.addEventListener("pointerup", function (event) {
    if (!start) {
      return;
    }
    var box = boxTo(photoPoint(event));
    start = null;
    svg.releasePointerCapture(event.pointerId);
    if (dragged && box.w >= MIN_SIDE && box.h >= MIN_SIDE) {
      show(box);
      fill(box);
      form.querySelector('button[type="submit"]').focus();
    } else if (drawn.parentNode) {
      drawn.parentNode.removeChild(drawn);
    }
  });
  // A drag that started on a numbered box must not also follow that box's link.
  svg.addEventListener("click", function (event) {
    if (dragged) {
      event.preventDefault();
      dragged = false;
    }
  }, true);
  // Typed numbers show as the box too, so what will be added is always visible.
  Object.keys(inputs).forEach(function (name) {
    inputs[name].addEventListener("input", function () {
      var box = {
        x: parseInt(inputs.x.value, 10), y: parseInt(inputs.y.value, 10),
        w: parseInt(inputs.w.value, 10), h: parseInt(inputs.h.value, 10)
      };
      if (!isNaN(box.x) && !isNaN(box.y) && !isNaN(box.w) && !isNaN(box.h)) {
        show(box);
      }
    });
  });
}());
