// The header's account menu is a <details> disclosure, which opens and closes from the keyboard by
// itself; this adds what menus are expected to do besides: Escape and a click elsewhere close it.

const menu = document.querySelector("details.user-menu");

if (menu) {
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && menu.open) {
      menu.open = false;
      menu.querySelector("summary").focus();
    }
  });
  document.addEventListener("click", (event) => {
    if (menu.open && !menu.contains(event.target)) {
      menu.open = false;
    }
  });
}
