// watch.js — the /watch page (watch.html): hls.js where Media Source Extensions exist,
// the browser's own HLS elsewhere (Safari). window.__watch is what tests read.
(function () {
  'use strict';
  var video = document.getElementById('video');
  var input = document.getElementById('src');
  var statusEl = document.getElementById('status');
  var hls = null;
  var state = window.__watch = { engine: null, src: null, errors: [], fatal: null, playing: false };

  function say(text, error) {
    statusEl.textContent = text;
    statusEl.className = error ? 'error' : '';
  }

  function describe() {
    if (!state.src) return;
    var buffered = 0;
    for (var i = 0; i < video.buffered.length; i++) buffered += video.buffered.end(i) - video.buffered.start(i);
    var level = hls && hls.levels && hls.levels[hls.currentLevel];
    say((state.fatal ? 'error: ' + state.fatal + '\n' : '') +
        state.engine + ' · ' + (video.paused ? 'paused' : 'playing') + ' · t=' + video.currentTime.toFixed(1) +
        ' s · buffered ' + buffered.toFixed(1) + ' s' +
        (video.videoWidth ? ' · ' + video.videoWidth + '×' + video.videoHeight : '') +
        (level && level.bitrate ? ' · ' + Math.round(level.bitrate / 1000) + ' kb/s' : '') +
        (level && level.details && level.details.live && isFinite(hls.latency) ? ' · live, ' + hls.latency.toFixed(1) + ' s behind' : ''),
        !!state.fatal);
  }

  function play(src) {
    if (hls) { hls.destroy(); hls = null; }
    state.src = src;
    state.playing = false;
    state.fatal = null;
    state.errors = [];
    var mse = window.Hls && window.Hls.isSupported();
    if (mse) {
      state.engine = 'hls.js ' + window.Hls.version;
      hls = window.__hls = new window.Hls();
      hls.on(window.Hls.Events.ERROR, function (e, d) {
        state.errors.push(d.details);
        if (d.fatal) {
          var code = d.response && d.response.code ? ' (HTTP ' + d.response.code + ')' : '';
          state.fatal = d.details + code;
          describe();
        }
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      state.engine = 'native HLS';
      video.src = src;
    } else {
      state.fatal = 'this browser plays HLS neither natively nor with hls.js (missing www/hls.min.js?)';
      describe();
      return;
    }
    var p = video.play();
    if (p && p.catch) p.catch(function () { /* autoplay refused: the controls are there */ });
    describe();
  }

  video.addEventListener('playing', function () { state.playing = true; });
  video.addEventListener('error', function () {
    state.fatal = 'media error ' + (video.error ? video.error.code : '');
    describe();
  });
  setInterval(describe, 500);

  document.getElementById('form').addEventListener('submit', function (e) {
    e.preventDefault();
    var src = input.value.trim();
    if (!src) return;
    history.replaceState(null, '', '#' + src);
    play(src);
  });

  // A URL after '#' (what the demo prints) plays at once; '?src=' works too.
  var initial = location.hash.slice(1) || new URLSearchParams(location.search).get('src');
  if (initial) {
    input.value = initial;
    play(initial);
  }
})();
