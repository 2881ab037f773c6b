// The browser's half of organizations/timefmt.py: times as staff pages show them,
// in the organisation's zone (from data-tz), 24-hour clock, "2026-12-08 09:30".
// live.js and campaign.js format every time they update through this one function.
(function () {
  "use strict";
  function parts(d, tz, withDate) {
    var opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    if (withDate) { opts.year = "numeric"; opts.month = "2-digit"; opts.day = "2-digit"; }
    var out = {};
    try {
      if (tz) opts.timeZone = tz;
      new Intl.DateTimeFormat("en-GB", opts).formatToParts(d).forEach(function (p) { out[p.type] = p.value; });
    } catch (e) {
      delete opts.timeZone;
      new Intl.DateTimeFormat("en-GB", opts).formatToParts(d).forEach(function (p) { out[p.type] = p.value; });
    }
    return out;
  }
  // show(iso, tz, {date: true, seconds: false}) as timefmt.show; "—" for none.
  function show(iso, tz, options) {
    options = options || {};
    var withDate = options.date !== false, seconds = !!options.seconds;
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    var p = parts(d, tz, withDate);
    var t = p.hour + ":" + p.minute + (seconds ? ":" + p.second : "");
    return withDate ? p.year + "-" + p.month + "-" + p.day + " " + t : t;
  }
  window.MyRobotTime = { show: show };
})();
