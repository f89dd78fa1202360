#!/usr/bin/env bash
# Debian libraries that Qt/napari need to render on a bare machine (with Xvfb for tests).
# Installs only what is missing; needs root or sudo.
set -euo pipefail
packages=(xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0
          libxcb-shape0 libxcb-randr0 libxcb-xfixes0 libxcb-cursor0 libxkbcommon-x11-0 libgl1 libegl1
          libfontconfig1 libdbus-1-3)
command -v dpkg-query >/dev/null || { echo "not a Debian system: install Xvfb and Qt's xcb libraries yourself"; exit 0; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
