#!/usr/bin/env bash
# Compiles the app's Android-free logic (app/src/main/java/.../core) and its
# JUnit 4 tests (app/src/test) with Debian's Kotlin compiler, and runs them on
# the plain JVM. Prints "N passed, M failed"; exits non-zero on any failure.
#
# Needs: Java 17 (javac, java), and the Debian packages `kotlin` (1.3.31) and
# `junit4` (4.13.2, brings hamcrest). With --install the script installs them
# with apt-get first (root only; about 20 s on a fresh Debian 12 machine).
# In Android Studio / Gradle the same tests run with `./gradlew testDebugUnitTest`.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
core="$here/app/src/main/java/com/kerasmixer/demo/core"
tests="$here/app/src/test/java/com/kerasmixer/demo/core"
resources="$here/app/src/test/resources"
out="$here/build/jvm-test"
junit=/usr/share/java/junit4.jar
hamcrest=/usr/share/java/hamcrest-core.jar
stdlib=/usr/share/java/kotlin-stdlib.jar

if [[ "${1:-}" == "--install" ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends kotlin junit4 >/dev/null
fi
for need in kotlinc javac java "$junit" "$hamcrest" "$stdlib"; do
    if ! command -v "$need" >/dev/null 2>&1 && [[ ! -f "$need" ]]; then
        echo "jvm_test: missing $need; install with: apt-get install kotlin junit4 (or run $0 --install)" >&2
        exit 2
    fi
done

rm -rf "$out" && mkdir -p "$out/classes"
# kotlinc 1.3 on JDK 17 prints a harmless JVM warning about -Xverify:none; drop it.
kotlinc -nowarn -cp "$junit" -d "$out/classes" "$core"/*.kt "$tests"/*.kt 2>&1 \
    | { grep -v -- "-Xverify:none" || true; }
[[ -n "$(ls "$out/classes/com/kerasmixer/demo/core" 2>/dev/null)" ]] || { echo "jvm_test: compile failed" >&2; exit 1; }
javac -cp "$junit" -d "$out/classes" "$here/scripts/JvmTestMain.java"

classes=()
for f in "$tests"/*Test.kt; do
    classes+=("com.kerasmixer.demo.core.$(basename "$f" .kt)")
done
java -cp "$out/classes:$resources:$junit:$hamcrest:$stdlib" JvmTestMain "${classes[@]}"
