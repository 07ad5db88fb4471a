# Installs the Census agent as a Windows service (WinSW wrapper) and enrolls, idempotently.
#   powershell -ExecutionPolicy Bypass -File install-agent.ps1 -Server https://census.example.com:8443 -Token cet_... -CaFingerprint 4fa7...
param(
  [Parameter(Mandatory = $true)][string]$Server,
  [string]$Token,
  [string]$CaFingerprint
)
$ErrorActionPreference = 'Stop'
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) { throw 'Run as Administrator.' }
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$dir = Join-Path $env:ProgramFiles 'Census\agent'
$data = Join-Path $env:ProgramData 'Census\agent'
New-Item -ItemType Directory -Force -Path $dir, (Join-Path $data 'state') | Out-Null
# The state directory holds the agent's private key: SYSTEM and Administrators only.
icacls (Join-Path $data 'state') /inheritance:r /grant:r 'SYSTEM:(OI)(CI)F' 'Administrators:(OI)(CI)F' | Out-Null
foreach ($f in 'census-agent.exe', 'census-agent-service.exe', 'census-agent.xml') {
  Copy-Item -Force (Join-Path $here $f) $dir
}
if (-not (Test-Path (Join-Path $data 'agent.toml'))) { New-Item -ItemType File (Join-Path $data 'agent.toml') | Out-Null }
$env:CENSUS_AGENT_STATE_DIR = Join-Path $data 'state'
if (-not (Test-Path (Join-Path $env:CENSUS_AGENT_STATE_DIR 'enrollment.json'))) {
  if (-not $Token -or -not $CaFingerprint) { throw '-Token and -CaFingerprint are required to enroll.' }
  & (Join-Path $dir 'census-agent.exe') enroll --server $Server --token $Token --ca-fingerprint $CaFingerprint
  if ($LASTEXITCODE -ne 0) { throw "enroll failed ($LASTEXITCODE)" }
} else {
  Write-Host 'already enrolled; keeping the existing enrollment'
}
$svc = Join-Path $dir 'census-agent-service.exe'
if (-not (Get-Service census-agent -ErrorAction SilentlyContinue)) { & $svc install }
& $svc restart
Write-Host 'census-agent runs as a Windows service (logs next to the service wrapper)'
