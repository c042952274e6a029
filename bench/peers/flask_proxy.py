# flask_proxy.py — the seed article's Flask M3U8 CORS proxy, rebuilt for bench/run.sh.
#
# Source: Ashlin Darius Govindasamy, "Solving the CORS Streaming Problem: A Practical
# Approach with M3U8 and Flask" (Appendix, "Complete Source Code"; repository
# github.com/adgsenpai/m3u8server), kept in ../shared/seeds/. The code below is the
# article's, line for line, with three changes, all marked "bench:":
#   - PROXY_BASE_URL comes from the environment (the article hard-codes yourdomain.com);
#   - it binds 127.0.0.1 (the article binds 0.0.0.0) on FLASK_PROXY_PORT;
#   - debug is off unless FLASK_PROXY_DEBUG=1 (the article's debug=True adds the reloader's
#     file-polling parent process and the debugger middleware: it would only be slower).
# It runs the way the article runs it: `python3 flask_proxy.py`, Flask's built-in
# (Werkzeug, threaded) server, on Debian 12's python3-flask, python3-requests,
# python3-m3u8, python3-cachetools and python3-flask-cors.
import os  # bench: configuration from the environment

from flask import Flask, request, Response, abort, make_response
import requests
import m3u8
from urllib.parse import urlparse, urljoin, urlencode
from cachetools import TTLCache
import threading
from flask_cors import CORS

app = Flask(__name__)

# Enable CORS for all routes and origins
CORS(app, resources={r"/proxy": {"origins": "*"}})

# Configuration
PROXY_BASE_URL = os.environ.get("PROXY_BASE_URL", "https://yourdomain.com/proxy")  # bench

# Create a cache with a Time-To-Live (TTL) of 5 minutes for playlists and segments
playlist_cache = TTLCache(maxsize=1000, ttl=300)  # 5 minutes TTL
segment_cache = TTLCache(maxsize=10000, ttl=300)   # 5 minutes TTL

# Lock for thread-safe cache access
cache_lock = threading.Lock()

# Helper function to determine if the URL points to an M3U8 file
def is_m3u8(url):
    return url.endswith('.m3u8')

# Helper function to extract filename from URL
def get_filename(url):
    return url.split('/')[-1] or 'file'

@app.route('/proxy')
def proxy():
    target_url = request.args.get('url')
    if not target_url:
        abort(400, description="Missing 'url' parameter.")

    filename = get_filename(target_url)

    if is_m3u8(target_url):
        with cache_lock:
            cached_playlist = playlist_cache.get(target_url)
        if cached_playlist:
            resp = make_response(cached_playlist)
            resp.headers['Content-Type'] = 'application/vnd.apple.mpegurl'
            resp.headers['Content-Disposition'] = f'inline; filename="{filename}"'
            return resp

        try:
            # Fetch the M3U8 playlist
            response = requests.get(target_url, timeout=10)
            response.raise_for_status()
        except requests.RequestException as e:
            abort(502, description=f"Error fetching the URL: {e}")

        try:
            # Parse the M3U8 playlist
            playlist = m3u8.loads(response.text)
        except Exception as e:
            abort(500, description=f"Error parsing M3U8 file: {e}")

        base_url = response.url  # Final URL after redirects

        # Modify each segment URI to route through the proxy
        for segment in playlist.segments:
            absolute_uri = urljoin(base_url, segment.uri)
            proxied_uri = f"{PROXY_BASE_URL}?{urlencode({'url': absolute_uri})}"
            segment.uri = proxied_uri

        # Handle variant playlists if present
        if playlist.is_variant:
            for playlist_variant in playlist.playlists:
                original_uri = playlist_variant.uri
                absolute_uri = urljoin(base_url, original_uri)
                proxied_uri = f"{PROXY_BASE_URL}?{urlencode({'url': absolute_uri})}"
                playlist_variant.uri = proxied_uri

        # Serialize the modified playlist
        modified_playlist = playlist.dumps()

        # Cache the modified playlist
        with cache_lock:
            playlist_cache[target_url] = modified_playlist

        resp = make_response(modified_playlist)
        resp.headers['Content-Type'] = 'application/vnd.apple.mpegurl'
        resp.headers['Content-Length'] = len(modified_playlist)
        resp.headers['Content-Disposition'] = f'inline; filename="{filename}"'
        return resp

    else:
        with cache_lock:
            cached_segment = segment_cache.get(target_url)
        if cached_segment:
            resp = Response(cached_segment, mimetype='video/MP2T')
            resp.headers['Content-Disposition'] = f'inline; filename="{filename}"'
            return resp

        try:
            # Fetch the media segment
            response = requests.get(target_url, timeout=10)
            response.raise_for_status()
        except requests.RequestException as e:
            abort(502, description=f"Error fetching the URL: {e}")

        content_type = response.headers.get('Content-Type', '')
        mime_type = 'video/MP2T' if target_url.endswith('.ts') else (content_type or 'application/octet-stream')

        content = response.content

        with cache_lock:
            segment_cache[target_url] = content

        resp = Response(content, mimetype=mime_type)
        resp.headers['Content-Disposition'] = f'inline; filename="{filename}"'
        resp.headers['Content-Length'] = len(content)
        return resp

if __name__ == '__main__':
    # Run the Flask app
    # For production, consider using a production-ready server like Gunicorn
    app.run(host='127.0.0.1', port=int(os.environ.get("FLASK_PROXY_PORT", "8000")),  # bench
            debug=os.environ.get("FLASK_PROXY_DEBUG") == "1")  # bench
