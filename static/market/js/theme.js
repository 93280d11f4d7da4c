// The dark/light theme toggle in the header. The choice is kept in localStorage; until the user
// picks one, the page follows the system preference (theme-init.js applies it before first paint).

const STORAGE_KEY = "cryptostock.theme";
export const THEME_EVENT = "cryptostock:themechange";

export function currentTheme() {
  return document.documentElement.dataset.theme === "light" ? "light" : "dark";
}

function storedTheme() {
  try {
    const value = window.localStorage.getItem(STORAGE_KEY);
    return value === "dark" || value === "light" ? value : null;
  } catch {
    return null;
  }
}

function applyTheme(theme, { persist }) {
  document.documentElement.dataset.theme = theme;
  if (persist) {
    try {
      window.localStorage.setItem(STORAGE_KEY, theme);
    } catch {
      // Not persisted (storage disabled); the toggle still works for this page view.
    }
  }
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    syncButton(button, theme);
  }
  document.dispatchEvent(new CustomEvent(THEME_EVENT, { detail: { theme } }));
}

function syncButton(button, theme) {
  // A toggle button: its name stays "Dark theme" and aria-pressed says whether it is on.
  button.setAttribute("aria-pressed", String(theme === "dark"));
  button.title = theme === "dark" ? "Switch to light theme" : "Switch to dark theme";
}

export function initThemeToggle() {
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    syncButton(button, currentTheme());
    button.addEventListener("click", () => {
      applyTheme(currentTheme() === "dark" ? "light" : "dark", { persist: true });
    });
  }
  const light = window.matchMedia("(prefers-color-scheme: light)");
  light.addEventListener("change", (event) => {
    if (storedTheme() === null) {
      applyTheme(event.matches ? "light" : "dark", { persist: false });
    }
  });
}

initThemeToggle();
