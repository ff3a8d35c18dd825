// What the file system says of a path beyond what .NET shows: the file's identity (device and inode, so a hard
// link, or a link in any folder of a path, is known for the same file), its type (regular, folder, device,
// FIFO), mode, owner and link count, and the path with every link resolved. Linux: glibc's stat and realpath,
// read with the struct layout of x86-64 or arm64. Elsewhere the full path stands for the file.
using System.Runtime.InteropServices;

namespace HitGpu.Nn;

internal static class FileSystem
{
    public enum Kind { Regular, Directory, CharacterDevice, BlockDevice, Fifo, Socket, Link, Other }

    /// <summary>A file's identity and kind, as stat(2) gives them (through every link).</summary>
    public readonly record struct Status(ulong Device, ulong Inode, Kind Kind, uint Mode, ulong Links, uint Owner, uint Group)
    {
        public bool SameFileAs(Status other) => Device == other.Device && Inode == other.Inode;
    }

    /// <summary>Whether stat(2) is read here (Linux on x86-64 or arm64): identities, kinds, modes and owners are then the system's.</summary>
    public static bool Native => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    /// <summary>The file at <paramref name="path"/>, through every link; null when there is none (or a link points nowhere).</summary>
    public static Status? Stat(string path)
    {
        if (!Native)
            return Guessed(path);
        var buffer = new byte[256];
        int result;
        bool x64 = RuntimeInformation.ProcessArchitecture == Architecture.X64;
        try
        {
            result = stat(path, buffer);
        }
        catch (EntryPointNotFoundException)
        {
            result = __xstat(x64 ? 1 : 0, path, buffer); // glibc before 2.33 exports stat only under this name; its struct version is 1 on x86-64, 0 on arm64
        }
        if (result != 0)
            return null;
        // struct stat: st_dev and st_ino first on both; then x86-64 has nlink (8 bytes), mode, uid, gid; arm64 mode, nlink (4 bytes), uid, gid.
        ulong device = BitConverter.ToUInt64(buffer, 0), inode = BitConverter.ToUInt64(buffer, 8);
        uint mode = BitConverter.ToUInt32(buffer, x64 ? 24 : 16);
        ulong links = x64 ? BitConverter.ToUInt64(buffer, 16) : BitConverter.ToUInt32(buffer, 20);
        uint owner = BitConverter.ToUInt32(buffer, x64 ? 28 : 24), group = BitConverter.ToUInt32(buffer, x64 ? 32 : 28);
        var kind = (mode & 0xF000) switch
        {
            0x8000 => Kind.Regular,
            0x4000 => Kind.Directory,
            0x2000 => Kind.CharacterDevice,
            0x6000 => Kind.BlockDevice,
            0x1000 => Kind.Fifo,
            0xC000 => Kind.Socket,
            0xA000 => Kind.Link,
            _ => Kind.Other,
        };
        return new Status(device, inode, kind, mode & 0xFFF, links, owner, group);
    }

    /// <summary>
    /// Where stat(2) is not read: what .NET shows. No identity (inode 0), no mode or owner (nothing applies them
    /// there); a path under /dev is taken for a device, so that it is written through rather than replaced.
    /// </summary>
    private static Status? Guessed(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
            return new Status(0, 0, Kind.Directory, 0, 1, 0, 0);
        if (!File.Exists(full))
            return null;
        return new Status(0, 0, full.StartsWith("/dev/", StringComparison.Ordinal) ? Kind.CharacterDevice : Kind.Regular, 0, 1, 0, 0);
    }

    /// <summary>The absolute path with every link in every component resolved (the file must exist); the full path where that cannot be had.</summary>
    public static string Real(string path)
    {
        string full = Path.GetFullPath(path);
        if (!Native)
        {
            try
            {
                return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full; // the last component's links, at least
            }
            catch (IOException)
            {
                return full;
            }
        }
        var resolved = realpath(full, IntPtr.Zero);
        if (resolved == IntPtr.Zero)
            return full;
        try
        {
            return Marshal.PtrToStringUTF8(resolved) ?? full;
        }
        finally
        {
            free(resolved);
        }
    }

    /// <summary>Gives <paramref name="path"/> the owner and group of a file it replaces; false where that is not allowed (it then keeps the
    /// writer's).</summary>
    public static bool SetOwner(string path, uint owner, uint group) => !Native || chown(path, owner, group) == 0;

    // Declared with DllImport: these take and return plain values, and the library is the C library itself.
#pragma warning disable SYSLIB1054
    [DllImport("libc", SetLastError = true)]
    private static extern int stat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);

    [DllImport("libc", SetLastError = true)]
    private static extern int __xstat(int version, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte[] buffer);

    [DllImport("libc", SetLastError = true)]
    private static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [DllImport("libc")]
    private static extern void free(IntPtr pointer);

    [DllImport("libc", SetLastError = true)]
    private static extern int chown([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint owner, uint group);
#pragma warning restore SYSLIB1054
}
