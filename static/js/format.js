// Number and duration formatting shared by the run page and the project's run table.
window.StudioFormat = (function () {
  "use strict";

  // Four significant digits; the full value goes in the element's title.
  // Anything but a number (a categorical choice such as "adam") is shown as it is.
  function sig4(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(4)));
  }

  // Seconds as m:ss or h:mm:ss.
  function clock(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const total = Math.round(seconds);
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const secs = String(total % 60).padStart(2, "0");
    return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
  }

  return { sig4, clock };
})();
