// The hitgpu tool: parses arguments, calls the library, prints. See HitGpuCli.Run.
return HitGpu.Cli.HitGpuCli.Run(args, Console.Out, Console.Error);
