/** A taskwire subscriber in its own process: counts exits and losses, prints JSON when stdin closes. */
import { createTaskwireClient, watchExits } from "@taskwire/client";

const [url, cpumask] = [process.argv[2]!, process.argv[3]!];
const ctl = new AbortController();
let exits = 0, lost = 0n, messages = 0;
process.stdin.on("data", () => {});
process.stdin.on("end", () => ctl.abort());
try {
  for await (
    const ev of watchExits(createTaskwireClient(url), {
      cpumask,
      buffer: 1 << 20,
      signal: ctl.signal,
      onSubscribed: () => process.stdout.write("ready\n"),
    })
  ) {
    messages++;
    if (ev.event.case === "exit") exits++;
    else if (ev.event.case === "lost") lost += ev.event.value.count;
  }
} catch {
  // aborted: the run is over
}
process.stdout.write(JSON.stringify({ exits, lost: Number(lost), events: messages }) + "\n");
