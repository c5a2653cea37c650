// Consistent hashing with virtual nodes: packet id → owner (a shard here, a node in a cluster).
// Adding or removing an owner moves only about 1/N of the packets.

export const VIRTUAL_NODES_PER_OWNER = 64;

/** FNV-1a, 32-bit: fast, well spread for short ids, identical on every node. */
export function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index += 1) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  // Final avalanche so ids that differ only at the end still land far apart.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  return hash >>> 0;
}

export class HashRing<Owner extends string = string> {
  private points: number[] = [];
  private owners: Owner[] = [];

  constructor(owners: readonly Owner[], private readonly virtualNodes = VIRTUAL_NODES_PER_OWNER) {
    for (const owner of owners) this.add(owner);
  }

  add(owner: Owner): void {
    const entries = this.points.map((point, index) => [point, this.owners[index]!] as const);
    for (let replica = 0; replica < this.virtualNodes; replica += 1) entries.push([hash32(`${owner}#${replica}`), owner]);
    entries.sort((left, right) => left[0] - right[0] || (left[1] < right[1] ? -1 : 1));
    this.points = entries.map(([point]) => point);
    this.owners = entries.map(([, entryOwner]) => entryOwner);
  }

  remove(owner: Owner): void {
    const keep = this.owners.map((entryOwner) => entryOwner !== owner);
    this.points = this.points.filter((_, index) => keep[index]);
    this.owners = this.owners.filter((_, index) => keep[index]);
  }

  ownerOf(key: string): Owner {
    if (this.points.length === 0) throw new RangeError('hash ring has no owners');
    const target = hash32(key);
    let low = 0;
    let high = this.points.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.points[middle]! < target) low = middle + 1;
      else high = middle;
    }
    return this.owners[low === this.points.length ? 0 : low]!;
  }
}
