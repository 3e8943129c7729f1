import { render } from "preact";

import { signIn, takeKeyFromHash } from "./api";
import { App } from "./app";
import "./styles.css";

takeKeyFromHash();
render(<App />, document.getElementById("app")!);
void signIn();
// The link pasted into a tab that already shows the dashboard changes only the fragment.
window.addEventListener("hashchange", () => {
  if (takeKeyFromHash()) void signIn();
});
