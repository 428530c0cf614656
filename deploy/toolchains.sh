#!/usr/bin/env bash
# The compilers and interpreters of run_program / /run_code / the judge beyond python and bash
# (docs/languages.md), from Debian's packages: idempotent, as root. Used by `make toolchains`
# (part of `make test`) and by the sandbox image (services/sandbox/Dockerfile).
# A language is offered only where its toolchain probes; CI installs them all, so a missing
# one fails its tests there instead of skipping them.
set -euo pipefail

PACKAGES=(
    gcc g++ libc6-dev            # c, cpp (bits/stdc++.h is precompiled at first use)
    default-jdk-headless junit4  # java, junit
    golang-go                    # go, go_test
    rustc                        # rust
    nodejs node-typescript       # nodejs/javascript, typescript
    php-cli ruby lua5.4 perl     # php, ruby, lua, perl
    r-base-core                  # R
    mono-mcs mono-runtime        # csharp
    scala                        # scala
    racket                       # racket
    iverilog                     # verilog
)

# bits/stdc++.h precompiled with the flags of languages.py's cpp (g++ uses it when found
# first on the include path and its flags match, else parses the header as usual).
pch() {
    local dir=/usr/local/lib/toolfleet/pch/bits header
    header=$(echo '#include <bits/stdc++.h>' | g++ -std=gnu++17 -x c++ -H -fsyntax-only - 2>&1 \
        | awk '/stdc\+\+\.h$/ && !f {print $2; f = 1}')
    [ -n "$header" ] || return 0
    if [ ! -f "$dir/stdc++.h.gch" ] || [ "$header" -nt "$dir/stdc++.h.gch" ]; then
        mkdir -p "$dir"
        g++ -std=gnu++17 -O2 -x c++-header "$header" -o "$dir/stdc++.h.gch.tmp"
        mv "$dir/stdc++.h.gch.tmp" "$dir/stdc++.h.gch"
    fi
}

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "toolchains: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # slim images drop the manual pages; openjdk's postinst still wants their directory
    mkdir -p /usr/share/man/man1
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/toolchains-apt.log \
        || { tail -n 40 /tmp/toolchains-apt.log; exit 1; }
fi
pch
