/**
 * A minimal writer for the kernel's initramfs format (cpio "newc"). Entries are owned by root, carry a fixed
 * mtime, and come out sorted by path with every parent directory first, so the same inputs give the same bytes.
 * The kernel unpacks several concatenated archives in order, later entries replacing earlier ones: the lab
 * appends a small per-run archive (keys, init script) to the cached base archive.
 */

type Entry =
  | { readonly kind: 'dir'; readonly mode: number }
  | { readonly kind: 'file'; readonly mode: number; readonly data: Buffer }
  | { readonly kind: 'symlink'; readonly target: string }
  | { readonly kind: 'chardev'; readonly mode: number; readonly major: number; readonly minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const MTIME = 1_700_000_000;

export class CpioArchive {
  private readonly entries = new Map<string, Entry>();

  private static norm(p: string): string {
    const n = p.replace(/^\/+/, '').replace(/\/+$/, '');
    if (!n || n.split('/').some((s) => s === '..' || s === '.' || s === '')) throw new Error(`cpio: bad path ${JSON.stringify(p)}`);
    return n;
  }

  private parents(p: string): void {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const e = this.entries.get(dir);
      if (!e) this.entries.set(dir, { kind: 'dir', mode: 0o755 });
      else if (e.kind !== 'dir') throw new Error(`cpio: ${dir} is needed as a directory but is a ${e.kind}`);
    }
  }

  has(p: string): boolean {
    return this.entries.has(CpioArchive.norm(p));
  }

  dir(p: string, mode = 0o755): this {
    const n = CpioArchive.norm(p);
    this.parents(n);
    this.entries.set(n, { kind: 'dir', mode });
    return this;
  }

  file(p: string, data: Buffer | string, mode = 0o644): this {
    const n = CpioArchive.norm(p);
    this.parents(n);
    this.entries.set(n, { kind: 'file', mode, data: typeof data === 'string' ? Buffer.from(data) : data });
    return this;
  }

  symlink(p: string, target: string): this {
    const n = CpioArchive.norm(p);
    this.parents(n);
    this.entries.set(n, { kind: 'symlink', target });
    return this;
  }

  chardev(p: string, major: number, minor: number, mode = 0o600): this {
    const n = CpioArchive.norm(p);
    this.parents(n);
    this.entries.set(n, { kind: 'chardev', mode, major, minor });
    return this;
  }

  /** The archive bytes (uncompressed), ending with the TRAILER!!! entry. */
  toBuffer(): Buffer {
    const chunks: Buffer[] = [];
    let ino = 1;
    const paths = [...this.entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const p of paths) {
      const e = this.entries.get(p)!;
      let mode: number;
      let data: Buffer = Buffer.alloc(0);
      let rmajor = 0;
      let rminor = 0;
      switch (e.kind) {
        case 'dir':
          mode = S_IFDIR | e.mode;
          break;
        case 'file':
          mode = S_IFREG | e.mode;
          data = e.data;
          break;
        case 'symlink':
          mode = S_IFLNK | 0o777;
          data = Buffer.from(e.target);
          break;
        case 'chardev':
          mode = S_IFCHR | e.mode;
          rmajor = e.major;
          rminor = e.minor;
          break;
      }
      chunks.push(...record(p, ino++, mode, e.kind === 'dir' ? 2 : 1, data, rmajor, rminor));
    }
    chunks.push(...record('TRAILER!!!', 0, 0, 1, Buffer.alloc(0), 0, 0));
    return Buffer.concat(chunks);
  }
}

const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

function record(name: string, ino: number, mode: number, nlink: number, data: Buffer, rmajor: number, rminor: number): Buffer[] {
  const nameBuf = Buffer.from(name + '\0');
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const header = Buffer.from('070701' + [ino, mode, 0, 0, nlink, MTIME, data.length, 0, 0, rmajor, rminor, nameBuf.length, 0].map(hex).join(''));
  return [header, nameBuf, pad4(header.length + nameBuf.length), data, pad4(data.length)];
}
