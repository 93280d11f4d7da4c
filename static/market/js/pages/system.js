// The System page re-renders its tables from the server every few seconds while it is visible,
// and on demand.
//
// Test hook: window.cryptostockSystem = {refreshes}.

import { announce, refreshFragments } from "cryptostock/pages-api";

const root = document.querySelector("[data-system-page]");
const everyMs = Number.parseInt(root.dataset.refreshSeconds || "15", 10) * 1000;
const hook = { refreshes: 0 };
window.cryptostockSystem = hook;

async function refresh() {
  try {
    await refreshFragments(["system"]);
    hook.refreshes += 1;
  } catch (error) {
    announce(error.message, { tone: "error" });
  }
}

root.querySelector("[data-refresh]")?.addEventListener("click", async () => {
  await refresh();
  announce("Refreshed.");
});

setInterval(() => {
  if (document.visibilityState === "visible") {
    refresh();
  }
}, everyMs);
