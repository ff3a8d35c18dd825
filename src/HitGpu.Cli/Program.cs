// The hitgpu tool: parses arguments, calls the library, prints. See HitGpuCli.Run.
using System.Runtime.InteropServices;
using HitGpu.Nn;

// Interrupted (Ctrl+C, a kill's SIGTERM): the process still ends, but first removes the temporary file of
// an output it was writing. (SIGKILL cannot be caught: the next write to that output removes the file.)
using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => AtomicFile.AbandonWrites());
using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => AtomicFile.AbandonWrites());
return HitGpu.Cli.HitGpuCli.Run(args, Console.Out, Console.Error);
