#!/usr/bin/env bash
# Packs HitGpu.Kernels, HitGpu.Nn and the hitgpu tool into a local folder, then, as a user would, offline:
# a fresh console project references HitGpu.Nn from that folder and runs the QuickStart program (train, save,
# load, evaluate, predict through the public API), and `dotnet tool install` installs hitgpu, which trains.
# NuGet sees only that folder and the local package cache: no network. Run by .ci/run after the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version=0.0.0-check
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}

dotnet pack "$root/HitGpu.sln" -c Release -o "$work/packages" -p:Version=$version -v q -nologo
ls "$work/packages"
for package in HitGpu.Kernels HitGpu.Nn HitGpu.Serve hitgpu; do
  test -f "$work/packages/$package.$version.nupkg" || { echo "missing package $package" >&2; exit 1; }
done

cat > "$work/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="hitgpu" value="$work/packages" />
    <add key="cache" value="$cache" />
  </packageSources>
</configuration>
CONFIG

mkdir "$work/app"
cat > "$work/app/app.csproj" <<PROJECT
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="HitGpu.Nn" Version="$version" />
  </ItemGroup>
</Project>
PROJECT
cp "$root/samples/QuickStart/Program.cs" "$work/app/"
dotnet restore "$work/app" --configfile "$work/nuget.config" -v q
(cd "$work/app" && dotnet run --no-restore -c Release 2>&1 | tee "$work/app.log")
grep -q "reloaded model, test accuracy" "$work/app.log"

dotnet tool install hitgpu --tool-path "$work/tool" --version $version --configfile "$work/nuget.config"
"$work/tool/hitgpu" train --study --epochs 2 --accelerator cpu --out "$work/model.hitgpu" >"$work/train.log"
grep -q "^test accuracy" "$work/train.log"
# The installed tool serves that model (ASP.NET Core comes with the shared framework): ready on a free port, then stopped.
"$work/tool/hitgpu" serve --model "$work/model.hitgpu" --port 0 --accelerator cpu >"$work/serve.log" 2>&1 &
server=$!
port=
for _ in $(seq 150); do
  port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log")
  [ -n "$port" ] && break
  sleep 0.2
done
[ -n "$port" ] || { cat "$work/serve.log" >&2; exit 1; }
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /v2/health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep -q '"ready":true' <&3
exec 3>&-
kill -TERM "$server"
wait "$server"
echo "packages: the fresh project ran the QuickStart program; the installed hitgpu tool trained, served and stopped"
