// Light or dark, as the system prefers (the CSS follows prefers-color-scheme on its own; the
// charts read their colors from CSS variables and are redrawn when it changes).
import { createStore } from "./lib/store";

const media = window.matchMedia("(prefers-color-scheme: dark)");
export const scheme = createStore<"light" | "dark">(media.matches ? "dark" : "light");
media.addEventListener("change", (e) => scheme.set(e.matches ? "dark" : "light"));
